"""File server settings: the roots it serves, the paths it never touches, and the caps on every answer.

Roots are configuration only; no argument a client sends can add or widen one.
    FILES_ROOTS='{"docs": "ro", "scratch": "rw"}'                   # directories under FILES_PATH
    FILES_ROOTS='{"home": {"mode": "ro", "path": "/home/me/notes"}}'  # or anywhere, by absolute path
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic_settings import NoDecode

from apps.kit import KitSettings

RootName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
# Never read, written, listed or matched by a search, at any depth (see `apps.files.paths.DenyList`).
# The usual credential files and folders: keys, cloud and cluster configs, registry and VCS logins, state.
DEFAULT_DENY = (
    ".git/",
    ".env*",
    "*.pem",
    "*.key",
    "id_*",
    ".ssh/",
    ".aws/",
    ".kube/",
    ".docker/",
    ".gnupg/",
    ".netrc",
    ".pgpass",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    "*.tfstate",
    "*.tfstate.backup",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
)
KIB, MIB = 1024, 1024 * 1024


class RootConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["ro", "rw"] = "ro"
    path: str | None = None  # absolute; default: FILES_PATH/<name>

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isabs(value):
            raise ValueError("a root's path must be absolute")
        return value


class FilesSettings(KitSettings):
    files_path: str = "/srv/files"  # where the volume is mounted (set by the platform)
    files_roots: dict[RootName, RootConfig] = Field(default_factory=lambda: {"workspace": RootConfig(mode="rw")})
    files_read_only: bool = False  # the global switch: every root read-only, write tools not registered
    files_deny: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_DENY))
    files_max_read_bytes: int = Field(default=256 * KIB, ge=1, le=16 * MIB)
    files_max_write_bytes: int = Field(default=10 * MIB, ge=1, le=48 * MIB)
    files_max_list_entries: int = Field(default=1000, ge=1, le=10_000)  # per page of list_directory
    files_max_directory_entries: int = Field(default=10_000, ge=1, le=1_000_000)  # read per listing
    files_max_search_results: int = Field(default=200, ge=1, le=10_000)
    files_max_search_visited: int = Field(default=20_000, ge=1, le=1_000_000)  # entries a search may look at
    files_search_seconds: float = Field(default=5.0, gt=0, le=60)
    files_workers: int = Field(default=8, ge=1, le=64)  # threads doing file system calls

    @field_validator("files_roots", mode="before")
    @classmethod
    def _mode_shorthand(cls, value: Any) -> Any:
        """`{"docs": "ro"}` is short for `{"docs": {"mode": "ro"}}`."""
        if isinstance(value, dict):
            return {name: {"mode": root} if isinstance(root, str) else root for name, root in value.items()}
        return value

    @field_validator("files_roots")
    @classmethod
    def _at_least_one(cls, value: dict[str, RootConfig]) -> dict[str, RootConfig]:
        if not value:
            raise ValueError("configure at least one root")
        return value

    @field_validator("files_deny", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _body_fits_a_write(self) -> FilesSettings:
        """A write's content arrives in one JSON body: let the body cap admit the write cap (plus room)."""
        needed = self.files_max_write_bytes + 256 * KIB
        if "mcp_max_body_bytes" not in self.model_fields_set and self.mcp_max_body_bytes < needed:
            self.mcp_max_body_bytes = needed
        return self

    @property
    def read_only(self) -> bool:
        """Nothing may be written: the global switch, or no root is `rw`."""
        return self.files_read_only or all(root.mode == "ro" for root in self.files_roots.values())

    def root_path(self, name: str) -> str:
        root = self.files_roots[name]
        return root.path or os.path.join(self.files_path, name)
