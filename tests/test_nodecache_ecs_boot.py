"""ECS node cache after the first boot: reboots, stop/start, and instances from an older launch template.

The user data is executed for real (bash) in a sandbox: absolute paths are moved under a temporary root, and
mdadm, mkfs.xfs, blkid, mount, mountpoint, install, systemctl and dnf are fakes on PATH that record their calls
and keep the little state a boot needs (what is mounted, which filesystem UUIDs exist). `systemctl start` runs
the unit's ExecStart; a "boot" runs every unit enabled into multi-user.target.wants, as systemd would.

Upstream:
- EC2 user data runs once, on the first boot (cloud-init per-instance); the EKS AMI persists its array as an
  enabled mount unit by UUID (awslabs/amazon-eks-ami v20251103 templates/shared/runtime/bin/setup-local-disks);
- ecs.service: After=docker.service cloud-final.service, EnvironmentFile /etc/ecs/ecs.config
  (aws/amazon-ecs-agent packaging/amazon-linux-ami-integrated/ecs.service); the ECS AMI enables `ecs`
  (aws/amazon-ecs-ami scripts/enable-services.sh);
- ecs-init reads ecs.config line by line into a map: the last ECS_INSTANCE_ATTRIBUTES wins
  (aws/amazon-ecs-agent ecs-init/docker/docker.go loadEnvVariables);
- Docker creates a missing bind-mount source as root 0755 (ECS developer guide, "Use bind mounts");
- memberOf placement constraints take a cluster query language expression `attribute:<name> == <value>`
  (botocore ecs model TaskDefinitionPlacementConstraint; ECS developer guide, cluster query language).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components.ecs_gpu_cluster import NODE_CACHE_ATTRIBUTE, NODE_CACHE_UNIT, mount_unit_name, user_data
from infra import eks_catalog as ec

MOUNT = ec.NODE_LOCAL_STORAGE_MOUNT
CACHE = ec.NODE_CACHE_HOST_PATH
UID = 10001
NVME_ATTR = ec.LOCAL_NVME_LABEL
LT = "aws:ec2/launchTemplate:LaunchTemplate"
TD = "aws:ecs/taskDefinition:TaskDefinition"

FAKES = {
    "mdadm": 'echo "mdadm $*" >> "$T/log"',
    # A new filesystem gets a new UUID, present on the (still attached) disks.
    "mkfs.xfs": 'echo "mkfs.xfs $*" >> "$T/log"; n=$(( $(cat "$T/state/n" 2>/dev/null || echo 0) + 1 )); '
                'echo $n > "$T/state/n"; echo "uuid-$n" > "$T/state/fs_uuid"; echo "uuid-$n" > "$T/state/present"',
    "blkid": 'cat "$T/state/fs_uuid"',
    # `mount -o ... DEV DIR` mounts; `mount DIR` looks DIR up in fstab and needs its UUID to be present.
    "mount": 'echo "mount $*" >> "$T/log"\n'
             'if [ "$#" -eq 1 ]; then\n'
             '  u=$(awk -v d="$1" \'$2 == d {sub(/^UUID=/, "", $1); print $1}\' "$T/etc/fstab" 2>/dev/null)\n'
             '  [ -n "$u" ] && [ "$u" = "$(cat "$T/state/present" 2>/dev/null)" ] || exit 32\n'
             'fi\n'
             'touch "$T/state/mounted"',
    "mountpoint": '[ -e "$T/state/mounted" ]',
    "install": 'echo "install $*" >> "$T/log"; for a; do d="$a"; done; mkdir -p "$d"',
    "dnf": 'echo "dnf $*" >> "$T/log"',
    "systemctl": 'echo "systemctl $*" >> "$T/log"\n'
                 '[ "${2:-}" = --now ] && set -- "$1" "$3"\n'  # the GPU health timer: enable is enough here
                 'u="$T/etc/systemd/system/${2:-}"\n'
                 'case "$1" in\n'
                 '  enable) for t in $(sed -n "s/^WantedBy=//p" "$u"); do '
                 'mkdir -p "$T/etc/systemd/system/$t.wants"; ln -sf "$u" "$T/etc/systemd/system/$t.wants/$2"; done ;;\n'
                 '  start) bash "$(sed -n "s/^ExecStart=//p" "$u")" || exit 1 ;;\n'
                 'esac',
}


class Instance:
    """One instance's root volume and instance store, in a temporary directory."""

    def __init__(self, root: Path, disks: int):
        self.t = root
        self.log_mark = 0
        for d in ("bin", "state", "etc/ecs", "etc/systemd/system", "usr/local/bin", "dev/disk/by-id", "mnt"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "etc/fstab").write_text("UUID=root / xfs defaults 0 0\n")
        for i in range(disks):
            (root / f"dev/nvme{i + 1}n1").write_text("")
            (root / f"dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS{i}").symlink_to(root / f"dev/nvme{i + 1}n1")
        for name, body in FAKES.items():
            p = root / "bin" / name
            p.write_text(f"#!/bin/bash\n{body}\n")
            p.chmod(0o755)

    def _sandboxed(self, script: str) -> str:
        return re.sub(r"(?<![\w/$])(/etc/|/usr/local/bin/|/mnt/|/dev/disk/)", lambda m: f"{self.t}{m.group(1)}", script)

    def _bash(self, script: str) -> None:
        env = {"PATH": f"{self.t}/bin:/usr/bin:/bin", "T": str(self.t), "HOME": str(self.t)}
        subprocess.run(["bash", "-c", self._sandboxed(script)], env=env, check=True, timeout=60)

    def first_boot(self, b64: str) -> None:
        self._bash(base64.b64decode(b64).decode())

    def boot(self, *, instance_store_wiped: bool) -> None:
        """A later boot: user data does not run; systemd starts the units enabled into multi-user.target."""
        (self.t / "state/mounted").unlink(missing_ok=True)
        shutil.rmtree(self.t / "mnt", ignore_errors=True)  # before the mount: an empty directory, or none
        if instance_store_wiped:
            (self.t / "state/present").unlink(missing_ok=True)
        self.log_mark = len(self.log())
        for unit in sorted((self.t / "etc/systemd/system/multi-user.target.wants").glob("*")):
            self._bash(f"systemctl start {unit.name}")

    def log(self) -> list[str]:
        p = self.t / "log"
        return p.read_text().splitlines() if p.exists() else []

    def since_boot(self) -> list[str]:
        return self.log()[self.log_mark:]

    def unit(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in (self.t / f"etc/systemd/system/{NODE_CACHE_UNIT}").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).extend(v.split())
        return out

    def fstab(self, mount: str) -> list[str]:
        return [line.replace(str(self.t), "") for line in (self.t / "etc/fstab").read_text().splitlines()
                if line.split()[1] == f"{self.t}{mount}"]

    def attributes(self) -> dict[str, str]:
        lines = [line for line in (self.t / "etc/ecs/ecs.config").read_text().splitlines()
                 if line.startswith("ECS_INSTANCE_ATTRIBUTES=")]
        assert len(lines) == 1, lines  # ecs-init keeps the last one only
        return json.loads(lines[0].split("=", 1)[1])

    def cache_ready(self) -> bool:
        """The cache directory exists, created with the task uid as owner by the latest boot."""
        made = [line for line in self.since_boot() if line.startswith("install ")]
        return (self.t / CACHE.lstrip("/")).is_dir() and made == [
            f"install -d -m 0755 -o {UID} -g {UID} {self.t}{CACHE}"]


def _nvme_user_data() -> str:
    return user_data("c", 120, nvme=(MOUNT, CACHE, UID, NVME_ATTR), cache=(CACHE, UID))


def test_the_array_and_the_cache_come_back_after_a_reboot(tmp_path):
    inst = Instance(tmp_path, disks=2)
    inst.first_boot(_nvme_user_data())
    assert inst.cache_ready()
    # Persisted by filesystem UUID (udev may assemble the array as /dev/md127 after a reboot), nofail.
    assert inst.fstab(MOUNT) == [f"UUID=uuid-1 {MOUNT} xfs defaults,noatime,nofail 0 0"]
    unit = inst.unit()
    mount_unit = mount_unit_name(MOUNT)
    if shutil.which("systemd-escape"):
        assert mount_unit == subprocess.run(["systemd-escape", "--path", "--suffix=mount", MOUNT], capture_output=True,
                                            text=True, check=True).stdout.strip()
    assert {"docker.service", "ecs.service"} <= set(unit["Before"]) and mount_unit in unit["After"]
    assert unit["Type"] == ["oneshot"] and unit["RemainAfterExit"] == ["yes"] and unit["WantedBy"] == ["multi-user.target"]
    # Enabled (every later boot) and started now (user data runs in cloud-final, before ecs.service).
    assert (tmp_path / f"etc/systemd/system/multi-user.target.wants/{NODE_CACHE_UNIT}").exists()
    assert f"systemctl start {NODE_CACHE_UNIT}" in inst.log()
    assert inst.attributes() == {NVME_ATTR: "raid0", NODE_CACHE_ATTRIBUTE[0]: NODE_CACHE_ATTRIBUTE[1]}

    inst.boot(instance_store_wiped=False)
    # The fstab mount found the array: not rebuilt (the cache survives), the directory is there for uid 10001.
    assert not any(line.startswith(("mdadm", "mkfs")) for line in inst.since_boot())
    assert inst.cache_ready() and (tmp_path / "state/mounted").exists()
    assert inst.attributes() == {NVME_ATTR: "raid0", NODE_CACHE_ATTRIBUTE[0]: NODE_CACHE_ATTRIBUTE[1]}


def test_a_stop_start_rebuilds_the_blank_instance_store_and_replaces_the_fstab_line(tmp_path):
    inst = Instance(tmp_path, disks=2)
    inst.first_boot(_nvme_user_data())
    inst.boot(instance_store_wiped=True)
    done = inst.since_boot()
    assert any(line.startswith("mdadm --create /dev/md/llmserving") for line in done)
    assert inst.fstab(MOUNT) == [f"UUID=uuid-2 {MOUNT} xfs defaults,noatime,nofail 0 0"]
    assert inst.cache_ready() and inst.attributes()[NVME_ATTR] == "raid0"


def test_the_attribute_says_what_is_mounted_when_the_array_cannot_be_built(tmp_path):
    inst = Instance(tmp_path, disks=2)
    inst.first_boot(_nvme_user_data())
    for disk in (tmp_path / "dev/disk/by-id").iterdir():
        disk.unlink()  # e.g. a stop/start onto a host whose disks are not visible yet
    inst.boot(instance_store_wiped=True)
    # No raid0 claim, but the cache still exists (on the root volume) for the tasks.
    assert inst.cache_ready() and inst.attributes() == {NODE_CACHE_ATTRIBUTE[0]: NODE_CACHE_ATTRIBUTE[1]}


def test_without_instance_store_the_cache_is_created_at_every_boot_on_the_root_volume(tmp_path):
    inst = Instance(tmp_path, disks=0)
    inst.first_boot(user_data("c", 120, cache=(CACHE, UID)))
    assert inst.cache_ready() and inst.attributes() == {NODE_CACHE_ATTRIBUTE[0]: NODE_CACHE_ATTRIBUTE[1]}
    assert mount_unit_name(MOUNT) not in inst.unit().get("After", [])
    inst.boot(instance_store_wiped=True)
    assert inst.cache_ready() and not any(line.startswith("mdadm") for line in inst.log())


# --- instances from an older launch template never get the tasks ---------------------------------------------------

def _matches(expression: str, attributes: dict[str, str]) -> bool:
    """The one cluster-query-language form used here: `attribute:<name> == <value>`."""
    m = re.fullmatch(r"attribute:([A-Za-z0-9_./\\-]+) == ([A-Za-z0-9_.-]+)", expression)
    assert m, expression
    return attributes.get(m.group(1)) == m.group(2)


@pytest.fixture(scope="module")
def ecs_run():
    from tests.harness import run_stack
    from tests.test_ecs_stacks import TIERS

    return run_stack(*TIERS["small-p4d"])


def test_tasks_that_bind_mount_the_cache_only_land_on_instances_whose_boot_unit_creates_it(ecs_run, tmp_path):
    from tests.aws_models import shape_problems
    from tests.harness import inputs, of_type

    tds = [inputs(r) for r in of_type(ecs_run, TD)]
    serving = [td for td in tds if any(v.get("hostPath") == CACHE for v in td.get("volumes") or [])]
    assert serving
    for td in tds:
        constraints = td.get("placementConstraints") or []
        if td in serving:
            assert [c["type"] for c in constraints] == ["memberOf"], td["family"]
            assert shape_problems("ecs", "TaskDefinitionPlacementConstraint", constraints[0]) == []
        else:
            assert constraints == []  # the mirror task mounts nothing of the instance
    expression = serving[0]["placementConstraints"][0]["expression"]
    # An instance as the template before this change left it (no attribute) is not a candidate.
    assert not _matches(expression, {NVME_ATTR: "raid0"})
    lts = [inputs(r) for r in of_type(ecs_run, LT)]
    assert lts
    for i, lt in enumerate(lts):
        inst = Instance(tmp_path / str(i), disks=2)
        inst.first_boot(lt["userData"])
        attrs = inst.attributes()  # one ECS_INSTANCE_ATTRIBUTES JSON with both attributes
        assert attrs[NVME_ATTR] == "raid0" and _matches(expression, attrs) and inst.cache_ready()
