"""Policies in Cedar (`apps.kit.call.policy`, evaluated by cedarpy): each server's defaults are exactly its scope
rules; the schema comes from the tool declarations; the organisation's example policies fit their servers and
decide on groups, resources, arguments and time; `tools/list` hides what no policy could permit."""

from __future__ import annotations

import calendar
from pathlib import Path
from typing import Any

import pytest

from apps import fleet
from apps.kit import Principal
from apps.kit.call.policy import Policies, PolicyError

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
SERVERS = fleet.servers()


def person(scopes: set[str], groups: tuple[str, ...] = (), subject: str = "casey") -> Principal:
    return Principal(subject, "client-1", frozenset(scopes), 0, frozenset(groups))


def example_arguments(spec: Any) -> Any:
    """Arguments that validate, for the tools whose policies these tests exercise."""
    known = {
        "table": "orders", "owner": "octo", "repo": "hello", "title": "t", "target": "pager", "subject": "s",
        "body": "b", "number": 1, "path": "a.txt", "name": "n", "query": "q", "preview_id": "p" * 32,
    }  # fmt: skip
    fields = spec.args.model_fields
    return spec.args.model_construct(**{k: v for k, v in known.items() if k in fields})


@pytest.mark.parametrize("module", sorted(SERVERS))
def test_the_default_policies_are_exactly_each_tools_scope_rule(module):
    server = SERVERS[module]
    policies = Policies(server, None, "https://issuer.example")
    for spec in server.specs.values():
        arguments = example_arguments(spec)
        held = policies.evaluate(person(set(spec.scopes)), spec, arguments)  # Cedar itself, always
        assert held.allowed and held.policies == (f"default: {spec.name}",), (spec.name, held)
        for missing in spec.scopes:
            lacking = policies.evaluate(person(set(spec.scopes) - {missing} | {"other:read"}), spec, arguments)
            assert not lacking.allowed and lacking.policies == (), (spec.name, missing)
        assert policies.may_list(person(set(spec.scopes)), spec)
        # without the organisation's policies the engine is not asked; its answer is the same
        assert policies.decide(person(set(spec.scopes)), spec, arguments) == held


@pytest.mark.parametrize(("app", "module"), [("mcp-db", "apps.db"), ("mcp-notify", "apps.notify"),
                                             ("mcp-github", "apps.github")])  # fmt: skip
def test_each_example_policy_fits_its_servers_schema(app, module, tmp_path):
    [example] = sorted((EXAMPLES / app).glob("*.cedar"))
    (tmp_path / "org.cedar").write_text(example.read_text())
    Policies(SERVERS[module], tmp_path, "https://issuer.example")  # raises on anything that does not fit


def _with(module: str, tmp_path: Path, example: str) -> Policies:
    (tmp_path / "org.cedar").write_text((EXAMPLES / example).read_text())  # `<app>/<file>`
    return Policies(SERVERS[module], tmp_path, "https://issuer.example")


def test_only_the_oncall_group_may_page(tmp_path):
    policies = _with("apps.notify", tmp_path, "mcp-notify/pager.cedar")
    spec = SERVERS["apps.notify"].specs["preview_notification"]
    pager, email = example_arguments(spec), example_arguments(spec).model_copy(update={"target": "team-email"})
    sender = {"notify:send"}
    denied = policies.decide(person(sender, ("developers",)), spec, pager)
    assert not denied.allowed and denied.policies == ("pager: on-call only",)
    assert policies.decide(person(sender, ("oncall",)), spec, pager).allowed
    assert policies.decide(person(sender, ("developers",)), spec, email).allowed
    assert policies.may_list(person(sender, ("developers",)), spec)  # other targets remain: still listed


def test_github_writes_on_working_days_only(tmp_path):
    policies = _with("apps.github", tmp_path, "mcp-github/working-days.cedar")
    spec = SERVERS["apps.github"].specs["create_issue"]
    saturday = calendar.timegm((2026, 12, 5, 12, 0, 0))
    monday = calendar.timegm((2026, 12, 7, 12, 0, 0))
    writer = person({"github:read", "github:write"})
    assert not policies.decide(writer, spec, example_arguments(spec), now=saturday).allowed
    assert policies.decide(writer, spec, example_arguments(spec), now=monday).allowed
    reads = SERVERS["apps.github"].specs["list_issues"]
    assert policies.decide(writer, reads, example_arguments(reads), now=saturday).allowed


def test_a_repository_is_seen_by_its_name_in_any_case(tmp_path):
    (tmp_path / "org.cedar").write_text('forbid (principal, action, resource == Repository::"octo/secret");\n')
    policies = Policies(SERVERS["apps.github"], tmp_path, "https://issuer.example")
    spec = SERVERS["apps.github"].specs["list_issues"]
    for owner, repo in (("octo", "secret"), ("Octo", "SECRET")):
        arguments = example_arguments(spec).model_copy(update={"owner": owner, "repo": repo})
        assert not policies.decide(person({"github:read"}), spec, arguments).allowed


def test_tools_list_hides_a_tool_no_policy_could_permit_and_keeps_one_a_resource_might(tmp_path):
    (tmp_path / "org.cedar").write_text(
        'forbid (principal, action == Action::"query", resource) when { principal.groups.contains("interns") };\n'
        'forbid (principal, action == Action::"describe_table", resource == Table::"customers")'
        ' when { principal.groups.contains("interns") };\n'
    )
    policies = Policies(SERVERS["apps.db"], tmp_path, "https://issuer.example")
    intern, staff = person({"db:read"}, ("interns",)), person({"db:read"}, ("staff",))
    specs = SERVERS["apps.db"].specs
    assert not policies.may_list(intern, specs["query"]) and policies.may_list(staff, specs["query"])
    assert policies.may_list(intern, specs["describe_table"])  # other tables may still be described


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('permit (principal, action == Action::"drop", resource);', 'line 1: unrecognized action `Action::"drop"`'),
        ('forbid (principal, action, resource) when { principal.team == "x" };', "attribute `team` on entity type"),
        ("forbid (principal, action, resource is Column);", "unrecognized entity type `Column`"),
        ("forbid (principal, action, resource", "typo.cedar: "),
    ],
)  # fmt: skip
def test_a_policy_naming_what_the_server_does_not_have_is_refused_with_its_line(text, problem, tmp_path):
    (tmp_path / "typo.cedar").write_text(text + "\n")
    with pytest.raises(PolicyError) as refused:
        Policies(SERVERS["apps.db"], tmp_path, "https://issuer.example")
    assert problem in str(refused.value)


def test_one_principal_varying_its_arguments_evicts_only_its_own_kept_decisions(tmp_path):
    from apps.kit.call import policy as engine

    policies = _with("apps.db", tmp_path, "mcp-db/contractors.cedar")
    spec = SERVERS["apps.db"].specs["query"]
    ada, mallory = person({"db:read"}, subject="ada"), person({"db:read"}, subject="mallory")
    policies.decide(ada, spec, example_arguments(spec))
    for n in range(10 * engine.DECISIONS_PER_PRINCIPAL):
        policies.decide(mallory, spec, example_arguments(spec).model_copy(update={"table": f"t{n}"}))
    kept = {key[0]: decisions for key, (_, decisions) in policies._principals.items()}
    assert len(kept["mallory"]) == engine.DECISIONS_PER_PRINCIPAL and len(kept["ada"]) == 1
