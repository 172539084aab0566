"""The one-machine target: the same model `pulumi up` deploys, rendered as `compose.yaml` (`onebox.compose`) and run
by `scripts/up` and `scripts/down` (`onebox.machine`), with a webhook sink where a cluster would reach the world
(`onebox.sink`). It reads the stack file as `pulumi up` does and derives each app through `infra.wiring`."""
