"""Where a serverless target pulls the apps image from: a registry in its own cloud and region, as each requires.

Lambda runs images from Amazon ECR in the function's own region only, so the program makes an ECR repository
(immutable tags, scanned on push) and copies the stack's image into it during `pulumi up` (`crane copy`, on the
machine that runs it; then `crane digest`): the function names the copy by digest, so what runs is exactly what
was copied. Cloud Run pulls from Artifact Registry (or Docker Hub), so the program makes an Artifact Registry
remote repository whose upstream is the image's registry: Cloud Run pulls through it, and it keeps what it pulled.
"""

from __future__ import annotations

import shlex

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_gcp as gcp

REPOSITORY = "mcpfleet"


def split_reference(image: str) -> tuple[str, str]:
    """`ghcr.io/mcpfleet/apps:0.1.0` -> (`ghcr.io`, `mcpfleet/apps:0.1.0`); no registry named: Docker Hub."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", image if "/" in image else f"library/{image}"


class EcrCopy(pulumi.ComponentResource):
    """The apps image in an ECR repository of the Lambda functions' region, named by digest (`image`)."""

    image: pulumi.Output[str]

    def __init__(self, name: str, source: str, region: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcpfleet:serverless:EcrCopy", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        _, path = split_reference(source)
        repository_name = path.split(":")[0].split("@")[0]  # ghcr.io/mcpfleet/apps -> mcpfleet/apps
        tag = path.rsplit(":", 1)[1]  # the stack's image is pinned: a tag, or a digest's hex (config refuses neither)
        self.repository = aws.ecr.Repository(
            f"{name}-repository",
            name=repository_name,
            image_tag_mutability="IMMUTABLE",  # a tag, once copied, always names the same image
            image_scanning_configuration={"scan_on_push": True},
            region=region,
            opts=child,
        )
        target = pulumi.Output.concat(self.repository.repository_url, ":", tag)
        copy = command.local.Command(
            f"{name}-copy",
            create=target.apply(
                lambda to: f"crane copy {shlex.quote(source)} {shlex.quote(to)} && crane digest {shlex.quote(to)}"
            ),
            triggers=[source],
            opts=child,
        )
        self.image = pulumi.Output.concat(self.repository.repository_url, "@", copy.stdout.apply(str.strip))
        self.register_outputs({"image": self.image})


class ArtifactRegistryRemote(pulumi.ComponentResource):
    """An Artifact Registry remote repository in the Cloud Run services' region, in front of the image's registry;
    `image` is the stack's image as Cloud Run pulls it through there."""

    image: str

    def __init__(self, name: str, source: str, project: str, region: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcpfleet:serverless:ArtifactRegistryRemote", name, None, opts)
        registry, path = split_reference(source)
        upstream = (
            {"public_repository": "DOCKER_HUB"}
            if registry == "docker.io"
            else {"custom_repository": {"uri": f"https://{registry}"}}
        )
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            repository_id=f"{REPOSITORY}-remote",
            format="DOCKER",
            mode="REMOTE_REPOSITORY",
            location=region,
            project=project,
            description=f"{registry}, pulled through for Cloud Run",
            remote_repository_config={"description": registry, "docker_repository": upstream},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image = f"{region}-docker.pkg.dev/{project}/{REPOSITORY}-remote/{path}"
        self.register_outputs({"image": self.image})
