"""The container image (Dockerfile, `make image`, docs/container.md) as far as a machine without a container engine
can check it: buildkit's own parser (the ``dockerfile`` package) reads the Dockerfile, which must build on the
official Ray image of requirements.lock's Ray version for Python 3.11 (CPU and GPU variants), install exactly the
lock's pins and run only commands the project has; the deploy manifests must name the tags `make image` builds.

The last test is opt-in: with RLPORTFOLIO_ROOTFS pointing at a root filesystem deploy/rootfs/build.sh built (the
same install in a Debian chroot; `make rootfs`), it runs deploy/rootfs/smoke.sh, which serves an agent from inside
it. It needs root and a few minutes, so CI does not run it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import pytest
import yaml
from packaging.utils import canonicalize_name

from rlportfolio.cli import SUBCOMMANDS

OFFICIAL_RAY = "rayproject/ray"
VARIANTS = ("cpu", "gpu")
# Options of `pip install` that take a value; every other option is a flag.
PIP_VALUE_OPTIONS = {
    "-c",
    "--constraint",
    "-r",
    "--requirement",
    "-e",
    "--editable",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
}
SHELL_SEPARATORS = {"&&", "||", ";", "|", "&"}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "for", "!"}


# -- reading the files ------------------------------------------------------------------------------------------------


def lock_pins(repo_root: Path) -> dict[str, str]:
    pins = {}
    for line in (repo_root / "requirements.lock").read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = version
    return pins


@pytest.fixture(scope="module")
def instructions(repo_root) -> tuple:
    return dockerfile.parse_file(str(repo_root / "Dockerfile"))


def build_args(instructions) -> dict[str, str]:
    """The ARGs declared before FROM (the only ones FROM can use), with their defaults."""
    args = {}
    for instruction in instructions:
        if instruction.cmd == "FROM":
            break
        if instruction.cmd == "ARG":
            for value in instruction.value:
                name, _, default = value.partition("=")
                args[name] = default
    return args


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], text)


def of(instructions, cmd: str) -> list:
    return [i for i in instructions if i.cmd == cmd]


def simple_commands(shell: str) -> list[list[str]]:
    """A RUN line's simple commands (split at &&, ||, ;, | and the keywords of if/for/while), as argument lists."""
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in SHELL_SEPARATORS or (not current and token in SHELL_KEYWORDS):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


def pip_installs(instructions) -> list[list[str]]:
    """The arguments after ``install`` of every ``pip install`` / ``python -m pip install`` the RUN lines make."""
    installs = []
    for run in of(instructions, "RUN"):
        for command in simple_commands(" ".join(run.value)):
            words = list(command)
            while words and re.fullmatch(r"[A-Za-z_]\w*=(?!=).*", words[0]):  # VAR=value prefixes
                words.pop(0)
            if words[:2] in (["pip", "install"], ["pip3", "install"]):
                installs.append(words[2:])
            elif words[1:4] == ["-m", "pip", "install"]:
                installs.append(words[4:])
    return installs


def parse_pip_install(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """(options with their values, positional requirement specifiers) of one ``pip install``."""
    options: dict[str, list[str]] = {}
    positional = []
    words = iter(args)
    for word in words:
        name, eq, value = word.partition("=")
        if name in PIP_VALUE_OPTIONS:
            options.setdefault(name, []).append(value if eq else next(words))
        elif word.startswith("-"):
            options.setdefault(word, [])
        else:
            positional.append(word)
    return options, positional


def make_image_tag(repo_root: Path, variant: str) -> str:
    """The tag `make image VARIANT=variant` builds (its recipe, printed by make -n)."""
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "image", f"VARIANT={variant}"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("VARIANT", "IMAGE", "ENGINE")},
    )
    assert done.returncode == 0, done.stderr
    (tag,) = set(re.findall(r" -t (\S+)", done.stdout))
    return tag


def containers(manifest: dict) -> list[dict]:
    spec = manifest["spec"]
    cluster = spec.get("rayClusterConfig") or spec["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def commented_docker_section(cluster_yaml: str) -> dict:
    """cluster.yaml's commented-out ``docker:`` section, uncommented and parsed."""
    lines = cluster_yaml.splitlines()
    start = lines.index("# docker:")
    block = ["docker:"]
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))


# -- the Dockerfile -----------------------------------------------------------------------------------------------------


def test_the_base_is_the_official_ray_image_at_the_locks_ray_pin_for_python_311_in_both_variants(
    repo_root, instructions
):
    ray = lock_pins(repo_root)["ray"]
    (base,) = of(instructions, "FROM")  # one stage: what is built is what runs
    args = build_args(instructions)
    variant = next(name for name, default in args.items() if default in VARIANTS)
    assert args[variant] == "cpu"  # the default is the image a laptop and Serve use
    for choice in VARIANTS:
        image = expand(base.value[0], {**args, variant: choice})
        assert image == f"{OFFICIAL_RAY}:{ray}-py311-{choice}"
    # `make image` passes the lock's Ray version and the variant it was asked for.
    recipe = subprocess.run(
        ["make", "-n", "image", "VARIANT=gpu"], cwd=repo_root, capture_output=True, text=True, timeout=60
    ).stdout
    assert f"--build-arg RAY_VERSION={ray}" in recipe and f"--build-arg {variant}=gpu" in recipe


def test_it_installs_exactly_the_locks_pins_and_nothing_unpinned_but_the_project(repo_root, instructions):
    pins = lock_pins(repo_root)
    installs = [parse_pip_install(args) for args in pip_installs(instructions)]
    assert installs
    project_installs = 0
    for options, requirements in installs:
        editable = options.get("-e", []) + options.get("--editable", [])
        for spec in requirements + editable:
            if spec == ".":
                project_installs += 1
                # The project's dependencies resolve under the lock: every one of them at its pin.
                assert "requirements.lock" in options.get("-c", []) + options.get("-r", []), options
                continue
            name, sep, version = spec.partition("==")
            assert sep and pins.get(canonicalize_name(name)) == version, f"{spec}: not requirements.lock's pin"
        # The only other index is PyTorch's CPU index, for torch alone (the CPU variant), without its dependencies.
        indexes = options.get("-i", []) + options.get("--index-url", []) + options.get("--extra-index-url", [])
        for index in indexes:
            assert index == "https://download.pytorch.org/whl/cpu"
            assert [r.partition("==")[0] for r in requirements] == ["torch"] and "--no-deps" in options
        assert not options.get("-f") and not options.get("--find-links")
    assert project_installs == 1
    # The build fails when an installed distribution the project requires is not at its pin.
    runs = " ".join(" ".join(run.value) for run in of(instructions, "RUN"))
    assert "python deploy/check_pins.py requirements.lock" in runs
    assert (repo_root / "deploy" / "check_pins.py").is_file()


def test_the_cpu_variant_takes_torch_from_pytorchs_cpu_index_and_the_gpu_variant_from_pypi(instructions):
    (torch_run,) = [run for run in of(instructions, "RUN") if "download.pytorch.org/whl/cpu" in " ".join(run.value)]
    assert re.search(r'if \[ "\$RAY_VARIANT" = cpu \]; then', " ".join(torch_run.value))
    # RAY_VARIANT is declared again after FROM, or the RUN would see it empty and every build would take CUDA torch.
    after_from = instructions[instructions.index(of(instructions, "FROM")[0]) + 1 :]
    assert any(i.cmd == "ARG" and i.value[0].partition("=")[0] == "RAY_VARIANT" for i in after_from)


def test_the_image_runs_only_commands_the_project_has(repo_root, instructions):
    scripts = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["scripts"]
    run_lines = [command for run in of(instructions, "RUN") for command in simple_commands(" ".join(run.value))]
    startup = [i for i in instructions if i.cmd in ("CMD", "ENTRYPOINT")]
    assert startup and all(i.json for i in startup)  # exec form: signals reach the program, no shell between
    commands = [list(i.value) for i in startup] + [c for c in run_lines if c[0] in scripts]
    for command in commands:
        assert command[0] in scripts, command
        assert command[1] in SUBCOMMANDS or command[1] in ("--help", "-h"), command
    # Every option the default command passes is one `rlportfolio serve` accepts.
    (cmd,) = of(instructions, "CMD")
    assert list(cmd.value[:2]) == ["rlportfolio", "serve"]
    help_text = subprocess.run(
        [sys.executable, "-m", "rlportfolio", "serve", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    for option in (word for word in cmd.value[2:] if word.startswith("--")):
        assert option in help_text, option
    # Scripts the RUN lines call are in the checkout the image copies.
    for command in run_lines:
        if command[0] == "python" and command[1].endswith(".py"):
            assert (repo_root / command[1]).is_file(), command


def test_the_checkout_is_at_the_workdir_the_manifests_and_the_default_command_use(repo_root, instructions):
    (workdir,) = of(instructions, "WORKDIR")
    copies = [i.value for i in of(instructions, "COPY")]
    assert any(value[0] == "." and value[-1].rstrip("/") == workdir.value[0] for value in copies)
    (cmd,) = of(instructions, "CMD")
    models = cmd.value[list(cmd.value).index("--models") + 1]
    service = yaml.safe_load((repo_root / "deploy" / "rayservice.yaml").read_text())
    for container in containers(service):
        assert container["workingDir"] == workdir.value[0]
        assert {"name": "models", "mountPath": models, "readOnly": True} in container["volumeMounts"]
    # Serve's port and the dashboard's are exposed, as in Ray's own images.
    exposed = {port for i in of(instructions, "EXPOSE") for port in i.value}
    assert {"8000", "8265"} <= exposed


def test_the_build_context_keeps_the_source_tree_and_leaves_out_environments_and_outputs(repo_root):
    """.dockerignore, applied as Docker applies it (deploy/rootfs/context.py, which the chroot build uses too)."""
    sys.path.insert(0, str(repo_root / "deploy" / "rootfs"))
    try:
        import context
    finally:
        sys.path.pop(0)
    rules = context.rules((repo_root / ".dockerignore").read_text())
    for path in (
        "pyproject.toml",
        "requirements.lock",
        "README.md",
        "configs/sweep_gpu.yaml",
        "benchmarks/env_throughput.py",
        "rlportfolio/cli.py",
        "serving/app.py",
        "deploy/check_pins.py",
        "models/README.md",
    ):
        assert context.kept(path, rules), path
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "runs/x/result.json",
        "models/ppo/metadata.json",
    ):
        assert not context.kept(path, rules), path
    assert not context.kept("serving/__pycache__/app.cpython-311.pyc", rules)


def test_check_pins_accepts_this_environment_and_names_a_distribution_off_its_pin(repo_root, tmp_path):
    """deploy/check_pins.py, which fails the image build when a required distribution is not at the lock's pin."""
    script = repo_root / "deploy" / "check_pins.py"
    lock = repo_root / "requirements.lock"
    done = subprocess.run([sys.executable, script, lock], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    moved = tmp_path / "requirements.lock"
    moved.write_text(re.sub(r"(?m)^pandas==.*$", "pandas==0.0.1", lock.read_text()))
    done = subprocess.run([sys.executable, script, moved], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "pandas" in done.stderr and "0.0.1" in done.stderr


# -- the manifests name what make image builds --------------------------------------------------------------------------


def test_the_manifests_and_cluster_yaml_name_the_tags_make_image_builds(repo_root):
    tags = {variant: make_image_tag(repo_root, variant) for variant in VARIANTS}
    ray = lock_pins(repo_root)["ray"]
    assert tags == {variant: f"rlportfolio:{ray}-py311-{variant}" for variant in VARIANTS}
    # Serving runs on CPUs; the GPU sweep's pods (its workers ask for nvidia.com/gpu) run CUDA torch.
    service = yaml.safe_load((repo_root / "deploy" / "rayservice.yaml").read_text())
    assert {c["image"] for c in containers(service)} == {tags["cpu"]}
    job = yaml.safe_load((repo_root / "deploy" / "rayjob.yaml").read_text())
    assert {c["image"] for c in containers(job)} == {tags["gpu"]}
    assert any("nvidia.com/gpu" in c["resources"]["limits"] for c in containers(job))
    # cluster.yaml installs the project on plain VMs; its commented docker section names the same images and is valid
    # for Ray's cluster launcher once uncommented.
    text = (repo_root / "cluster.yaml").read_text()
    section = commented_docker_section(text)
    assert section["docker"]["head_image"] == tags["cpu"] and section["docker"]["worker_image"] == tags["gpu"]
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate({**yaml.safe_load(text), **section}, schema)
    for manifest in ("deploy/rayservice.yaml", "deploy/rayjob.yaml", "cluster.yaml"):
        assert "ghcr.io/example" not in (repo_root / manifest).read_text(), manifest


# -- opt-in: the same install in a chroot, serving ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rootfs_serves_an_exported_agent_from_inside_a_chroot(repo_root):
    rootfs = os.environ.get("RLPORTFOLIO_ROOTFS")
    if not rootfs:
        pytest.skip(
            "RLPORTFOLIO_ROOTFS is not set: build a rootfs with `make rootfs` (root) and point it at OUT/rootfs"
        )
    if os.geteuid() != 0:
        pytest.skip("the chroot smoke test needs root (chroot, mount)")
    done = subprocess.run(
        ["bash", "deploy/rootfs/smoke.sh", rootfs], cwd=repo_root, capture_output=True, text=True, timeout=840
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "smoke test passed" in done.stdout
