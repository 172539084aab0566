from apps.entry import serve

serve("apps.github")
