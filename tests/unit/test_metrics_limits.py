"""Container limits from the cgroup, for the CPU/memory-over-limit fallback alerts."""

from __future__ import annotations

from apps.kit.observe.metrics import CgroupLimitsCollector


def write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def test_cgroup_v2_limits(tmp_path):
    write(tmp_path, {"cpu.max": "50000 100000", "memory.max": "536870912"})
    assert CgroupLimitsCollector(tmp_path).limits() == (0.5, 536870912.0)
    names = {m.name for m in CgroupLimitsCollector(tmp_path).collect()}
    assert names == {"mcp_process_cpu_limit_cores", "mcp_process_memory_limit_bytes"}


def test_unlimited_exports_nothing(tmp_path):
    write(tmp_path, {"cpu.max": "max 100000", "memory.max": "max"})
    assert CgroupLimitsCollector(tmp_path).limits() == (None, None)
    assert list(CgroupLimitsCollector(tmp_path).collect()) == []


def test_cgroup_v1_limits(tmp_path):
    write(
        tmp_path,
        {
            "cpu/cpu.cfs_quota_us": "25000",
            "cpu/cpu.cfs_period_us": "100000",
            "memory/memory.limit_in_bytes": "268435456",
        },
    )
    assert CgroupLimitsCollector(tmp_path).limits() == (0.25, 268435456.0)
    write(tmp_path, {"cpu/cpu.cfs_quota_us": "-1", "memory/memory.limit_in_bytes": str(2**63 - 4096)})
    assert CgroupLimitsCollector(tmp_path).limits() == (None, None)


def test_no_cgroup_files(tmp_path):
    assert CgroupLimitsCollector(tmp_path / "absent").limits() == (None, None)
