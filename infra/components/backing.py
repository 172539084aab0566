"""One builder for the platform's backing services (Postgres, Redis): the same hardened pod and Service.

Each backing service is one replica in the data namespace, from a pinned official image, running as
its image's own non-root user with a read-only root filesystem, one named port, readiness and liveness
probes, and a Service of the same name. With `storage` it is a StatefulSet with a volume claim `data`;
without, a Deployment whose `data` is an emptyDir (state that may be lost, such as rate-limit windows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s import child_opts, container_security, labels, pod_security
from infra.config import DATA_NAMESPACE


@dataclass(frozen=True)
class BackingService:
    name: str
    component: str
    image: str
    uid: int
    port: int
    args: list[str]
    env: list[dict[str, Any]]
    probe: dict[str, Any]  # readiness; liveness is the same check, later and more patient
    liveness: dict[str, Any]  # what liveness changes in `probe`
    resources: dict[str, Any]
    data_path: str
    scratch: dict[str, str] = field(default_factory=dict)  # emptyDir volume name -> mount path
    storage: str | None = None

    def build(self, resource_name: str, parent: pulumi.Resource, provider: k8s.Provider) -> k8s.core.v1.Service:
        lbl = labels(self.name, self.component)
        mounts = [{"name": "data", "mountPath": self.data_path}]
        mounts += [{"name": volume, "mountPath": path} for volume, path in self.scratch.items()]
        volumes = [{"name": volume, "emptyDir": {}} for volume in self.scratch]
        if self.storage is None:
            volumes.insert(0, {"name": "data", "emptyDir": {}})
        pod = {
            "metadata": {"labels": lbl},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": pod_security(self.uid, self.uid),
                "containers": [
                    {
                        "name": self.name,
                        "image": self.image,
                        "args": self.args,
                        "env": self.env,
                        "ports": [{"name": self.name, "containerPort": self.port}],
                        "readinessProbe": self.probe,
                        "livenessProbe": {**self.probe, **self.liveness},
                        "volumeMounts": mounts,
                        "securityContext": container_security(),
                        "resources": self.resources,
                    }
                ],
                "volumes": volumes,
            },
        }
        metadata = {"name": self.name, "namespace": DATA_NAMESPACE, "labels": lbl}
        spec: dict[str, Any] = {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": self.name}},
            "template": pod,
        }
        if self.storage is None:
            k8s.apps.v1.Deployment(
                f"{resource_name}-deployment", metadata=metadata, spec=spec, opts=child_opts(parent, provider)
            )
        else:
            claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": self.storage}}}
            spec |= {"serviceName": self.name, "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}]}
            k8s.apps.v1.StatefulSet(
                f"{resource_name}-statefulset", metadata=metadata, spec=spec, opts=child_opts(parent, provider)
            )
        return k8s.core.v1.Service(
            f"{resource_name}-service",
            metadata=metadata,
            spec={
                "selector": {"app.kubernetes.io/name": self.name},
                "ports": [{"name": self.name, "port": self.port, "targetPort": self.name}],
            },
            opts=child_opts(parent, provider),
        )
