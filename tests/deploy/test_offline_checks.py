"""Checks of the deployment files that need no docker: Dockerfile, compose.yaml, deploy/nginx.conf.

The linters (hadolint, check-jsonschema's copy of the compose spec, `nginx -t`) run on the real
files and on deliberately broken copies, so a check that cannot fail would show up here. Static
assertions tie the files to the app's contract (start command, /readyz, volumes, non-root user),
and the slow smoke test runs the image's exact CMD, with the image's environment, outside docker.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
RESOLVER_TEMPLATE = ROOT / "deploy" / "nginx-resolver.conf.template"

SHIPPED_MODEL = "models/mnist-logreg.safetensors"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


# --------------------------------------------------------------------------------------------
# Tools


def venv_tool(name: str) -> str:
    """A console script of this interpreter's environment (dev extras), else one on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------------
# A small Dockerfile reader: enough for our own file, not a general parser.


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the instruction, continuation lines joined


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        # Comment lines are dropped even inside a continued instruction, as docker does.
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1] :]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [ins for ins in stage if ins.keyword == keyword]
    assert len(found) == 1, f"expected exactly one {keyword} in the runtime stage, found {found}"
    return found[0]


def exec_form(args: str, what: str) -> list[str]:
    assert args.startswith("["), f"{what} must be exec form (a JSON array), not {args!r}"
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
    return value


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """`--chown=1:1 --from=builder a b` -> ({'chown': '1:1', 'from': 'builder'}, 'a b')."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword != "ENV":
            continue
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:  # legacy `ENV KEY value`
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def volumes_of(stage: list[Instruction]) -> list[str]:
    paths: list[str] = []
    for ins in stage:
        if ins.keyword == "VOLUME":
            args = ins.args
            paths += json.loads(args) if args.startswith("[") else args.split()
    return paths


Copy = tuple[dict[str, str], list[str], str]


def copies_from_context(instructions: list[Instruction]) -> list[Copy]:
    """(flags, sources, destination) of every COPY that reads the build context."""
    copies: list[Copy] = []
    for ins in instructions:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        flags, rest = split_flags(ins.args)
        if "from" in flags:
            continue
        words = json.loads(rest) if rest.startswith("[") else rest.split()
        copies.append((flags, words[:-1], words[-1]))
    return copies


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(dockerfile: list[Instruction]) -> list[Instruction]:
    return final_stage(dockerfile)


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------------------------
# hadolint


def hadolint(path: Path) -> tuple[int, list[dict]]:
    result = run([venv_tool("hadolint"), "--no-color", "--format", "json", str(path)])
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"hadolint printed no JSON: {result.stdout}{result.stderr}")
    return result.returncode, findings


def test_hadolint_passes_on_the_dockerfile() -> None:
    code, findings = hadolint(DOCKERFILE)
    assert findings == []
    assert code == 0


BROKEN_DOCKERFILES = {
    # name: (edit of the real Dockerfile, hadolint rule that must fire)
    "no_from": (lambda s: re.sub(r"(?m)^FROM .*$", "", s), "DL3061"),
    "shell_form_cmd": (
        lambda s: re.sub(r"(?m)^CMD \[.*\]$", "CMD mnist-canvas serve --port 8000", s),
        "DL3025",
    ),
    "runs_as_root": (lambda s: s.replace("USER 10001:10001", "USER root"), "DL3002"),
    "unpinned_apt_get": (
        lambda s: s.replace(
            "\nUSER 10001:10001",
            "\nRUN apt-get update && apt-get install -y curl\nUSER 10001:10001",
        ),
        "DL3008",
    ),
    "unpinned_torch": (lambda s: s.replace('"torch==${TORCH_VERSION}"', "torch"), "DL3013"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_DOCKERFILES))
def test_hadolint_fails_on_a_broken_dockerfile(name: str, tmp_path: Path) -> None:
    edit, rule = BROKEN_DOCKERFILES[name]
    original = DOCKERFILE.read_text()
    broken = edit(original)
    assert broken != original, f"the {name} edit no longer applies to the Dockerfile"
    path = tmp_path / "Dockerfile"
    path.write_text(broken)
    code, findings = hadolint(path)
    assert code != 0
    assert rule in {f["code"] for f in findings}, findings


# --------------------------------------------------------------------------------------------
# compose.yaml against the compose specification


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)]
    )


def test_compose_file_matches_the_compose_spec() -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def _ports_not_a_list(data: dict) -> None:
    data["services"]["web"]["ports"] = "8000:8000"


def _misspelt_healthcheck_key(data: dict) -> None:
    data["services"]["web"]["healthcheck"]["start_perod"] = "10s"


def _unknown_service_key(data: dict) -> None:
    data["services"]["web"]["replicas"] = 3  # belongs under deploy:


def _gpu_without_capabilities(data: dict) -> None:
    devices = data["services"]["web-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    del devices[0]["capabilities"]


def _bad_depends_on_condition(data: dict) -> None:
    data["services"]["web"]["depends_on"]["train"]["condition"] = "service_finished"


BROKEN_COMPOSE = {
    # name: (edit of the parsed compose.yaml, what the schema error must mention)
    "ports_not_a_list": (_ports_not_a_list, "is not of type 'array'"),
    "misspelt_healthcheck_key": (_misspelt_healthcheck_key, "start_perod"),
    "unknown_service_key": (_unknown_service_key, "'replicas' was unexpected"),
    "gpu_without_capabilities": (_gpu_without_capabilities, "'capabilities' is a required"),
    "bad_depends_on_condition": (_bad_depends_on_condition, "service_finished"),
}


def test_compose_check_passes_on_an_unbroken_rewrite(compose: dict, tmp_path: Path) -> None:
    # Control for the broken cases below: the rewrite itself (anchors expanded) is still valid.
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(compose, sort_keys=False))
    result = check_compose(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(BROKEN_COMPOSE))
def test_compose_check_fails_on_a_broken_file(name: str, compose: dict, tmp_path: Path) -> None:
    edit, message = BROKEN_COMPOSE[name]
    data = json.loads(json.dumps(compose))  # deep copy
    edit(data)
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = check_compose(path)
    assert result.returncode != 0, f"{name} passed the schema check"
    assert message in result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# nginx -t


def nginx_test(conf_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    # The container writes its pid and temp files under /tmp; keep the test's inside tmp_path.
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text.replace("/tmp/", f"{prefix}/"))
    # What the image's entrypoint writes at start under Docker (its DNS is 127.0.0.11).
    (prefix / "resolver.conf").write_text(render_resolver("127.0.0.11"))
    return run([nginx, "-t", "-e", "stderr", "-p", f"{prefix}/", "-c", str(conf)])


def render_resolver(servers: str) -> str:
    """deploy/nginx-resolver.conf.template as the nginx image's entrypoint renders it."""
    return RESOLVER_TEMPLATE.read_text().replace("${NGINX_LOCAL_RESOLVERS}", servers)


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    result = nginx_test(NGINX_CONF.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


BROKEN_NGINX = {
    "missing_semicolon": lambda s: s.replace("body_size 10m;", "body_size 10m"),
    "unknown_directive": lambda s: s.replace("proxy_pass $mnist", "proxy_passs $mnist", 1),
    "unbalanced_brace": lambda s: s.rstrip().removesuffix("}"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_NGINX))
def test_nginx_rejects_a_broken_config(name: str, tmp_path: Path) -> None:
    original = NGINX_CONF.read_text()
    broken = BROKEN_NGINX[name](original)
    assert broken != original, f"the {name} edit no longer applies to nginx.conf"
    result = nginx_test(broken, tmp_path)
    assert result.returncode != 0
    assert "[emerg]" in result.stderr


# --------------------------------------------------------------------------------------------
# The Dockerfile and the app agree


def test_cmd_is_exec_form_and_serves_on_the_exposed_port(runtime: list[Instruction]) -> None:
    cmd = exec_form(only(runtime, "CMD").args, "CMD")
    assert cmd[:2] == ["mnist-canvas", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert [ins for ins in runtime if ins.keyword == "ENTRYPOINT"] == []
    assert port in only(runtime, "EXPOSE").args.split()


def test_healthcheck_is_exec_form_and_asks_readyz(runtime: list[Instruction]) -> None:
    flags, rest = split_flags(only(runtime, "HEALTHCHECK").args)
    assert rest.startswith("CMD ")
    probe = exec_form(rest.removeprefix("CMD ").strip(), "HEALTHCHECK")
    assert probe[0] == "python"  # the slim image has no curl or wget
    assert "http://127.0.0.1:8000/readyz" in " ".join(probe)
    assert {"interval", "timeout", "start-period", "retries"} <= flags.keys()


def test_runtime_user_is_numeric_and_not_root(runtime: list[Instruction]) -> None:
    users = [ins.args for ins in runtime if ins.keyword == "USER"]
    assert users, "the runtime stage never leaves root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert gid.isdigit() and int(gid) != 0, users[-1]


def test_torch_comes_first_from_the_index_build_arg(dockerfile: list[Instruction]) -> None:
    args = {
        ins.args.partition("=")[0]: ins.args.partition("=")[2]
        for ins in dockerfile
        if ins.keyword == "ARG"
    }
    assert args["TORCH_INDEX_URL"] == CPU_INDEX
    builder = dockerfile[: [i for i, ins in enumerate(dockerfile) if ins.keyword == "FROM"][1]]
    runs = [i for i, ins in enumerate(builder) if ins.keyword == "RUN"]
    torch_run = next(i for i in runs if '--index-url "${TORCH_INDEX_URL}"' in builder[i].args)
    first_copy = min(i for i, ins in enumerate(builder) if ins.keyword == "COPY")
    assert torch_run < first_copy, "torch must be installed before any source is copied"
    # Dependencies are installed before the code arrives, the code without them.
    copies = [(i, ins.args) for i, ins in enumerate(builder) if ins.keyword == "COPY"]
    deps_run = next(i for i in runs if "-r /tmp/requirements.txt" in builder[i].args)
    assert copies[0][1].startswith("pyproject.toml") and copies[0][0] < deps_run
    assert all(i > deps_run for i, _ in copies[1:])
    assert any("--no-deps" in builder[i].args for i in runs if i > deps_run)


def test_model_and_data_live_in_volumes_the_user_owns(runtime: list[Instruction]) -> None:
    env = env_of(runtime)
    volumes = volumes_of(runtime)
    assert sorted(volumes) == ["/data", "/models"]
    model_path = env["MNIST_CANVAS_MODEL_PATH"]
    assert Path(model_path).parent.as_posix() == "/models"
    assert env["MNIST_CANVAS_DATA_DIR"] == "/data"
    # The shipped model is baked into the volume path, owned by the server's user, so a new
    # named volume starts out holding it.
    user = [ins.args for ins in runtime if ins.keyword == "USER"][-1]
    seeded = [
        flags
        for flags, sources, dest in copies_from_context(runtime)
        if sources == [SHIPPED_MODEL] and dest == model_path
    ]
    assert seeded and seeded[0].get("chown") == user
    assert all(k in env for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"))


# --------------------------------------------------------------------------------------------
# .dockerignore (docker's rules: last match wins, `!` re-includes, a match on a folder covers
# everything in it, `*` stays within one path segment, `**` crosses them)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "app/__pycache__/main.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        "tests/screenshots/canvas.png",
        "benchmarks/results/run.json",
        "data/mnist/train-images-idx3-ubyte.gz",
        "models/retrained-last-week.safetensors",
        ".env",
        "mnist_canvas.egg-info/PKG-INFO",
    ],
)
def test_dockerignore_keeps_local_state_out_of_the_context(path: str) -> None:
    assert dockerignored(path)


def test_dockerignore_keeps_everything_the_dockerfile_copies(dockerfile: list[Instruction]) -> None:
    sources = {src for _, srcs, _ in copies_from_context(dockerfile) for src in srcs}
    assert {"app", "model", "static", "templates", "pyproject.toml", SHIPPED_MODEL} <= sources
    for source in sorted(sources):
        assert not dockerignored(source), f"{source} is copied but .dockerignore drops it"
        base = ROOT / source
        if base.is_dir():
            for file in base.rglob("*"):
                rel = file.relative_to(ROOT).as_posix()
                if file.is_file() and "__pycache__" not in rel:
                    assert not dockerignored(rel), f"{rel} would be missing from the image"


def test_everything_the_dockerfile_copies_exists(dockerfile: list[Instruction]) -> None:
    missing = [
        src
        for _, srcs, _ in copies_from_context(dockerfile)
        for src in srcs
        if not (ROOT / src).exists()
    ]
    assert missing == [], f"docker build would fail: {missing} not in the repository"


# --------------------------------------------------------------------------------------------
# compose.yaml and the app agree


def _readyz_probe(healthcheck: dict) -> list[str]:
    test = healthcheck["test"]
    assert isinstance(test, list) and test[0] == "CMD", f"exec-form healthcheck expected: {test}"
    return test[1:]


def test_web_is_checked_on_readyz_and_restarts(compose: dict) -> None:
    web = compose["services"]["web"]
    assert "http://127.0.0.1:8000/readyz" in " ".join(_readyz_probe(web["healthcheck"]))
    # Compose refuses start_interval outright on engines older than Docker 25.
    assert "start_interval" not in web["healthcheck"]
    assert web["restart"] == "unless-stopped"
    assert web["build"]["args"]["TORCH_INDEX_URL"] == CPU_INDEX


def test_web_scales_behind_the_load_balancer(compose: dict) -> None:
    services = compose["services"]
    # A fixed host port on `web` would make `--scale web=3` fail on the second replica.
    assert "ports" not in services["web"]
    assert "container_name" not in services["web"]
    lb = services["lb"]
    assert lb["depends_on"]["web"]["condition"] == "service_healthy"
    published = [str(p) for p in lb["ports"]]
    assert len(published) == 1 and published[0].endswith(":8080")
    conf = NGINX_CONF.read_text()
    assert re.search(r"(?m)^\s*listen 8080;", conf)
    assert "http://web:8000" in conf  # service name and the port the CMD serves on
    # The engine's DNS (Docker's 127.0.0.11, podman's aardvark-dns), written by the image's
    # entrypoint from /etc/resolv.conf: replicas are found as they come and go.
    assert "include /tmp/resolver.conf;" in conf
    assert re.search(r"(?m)^resolver \$\{NGINX_LOCAL_RESOLVERS\} valid=\d+s",
                     RESOLVER_TEMPLATE.read_text())
    assert lb["environment"]["NGINX_ENTRYPOINT_LOCAL_RESOLVERS"] == "1"
    assert lb["environment"]["NGINX_ENVSUBST_OUTPUT_DIR"] == "/tmp"
    mount = f"./{NGINX_CONF.relative_to(ROOT).as_posix()}:/etc/nginx/nginx.conf:ro"
    template = (f"./{RESOLVER_TEMPLATE.relative_to(ROOT).as_posix()}:"
                "/etc/nginx/templates/resolver.conf.template:ro")
    assert mount in lb["volumes"] and template in lb["volumes"]


def test_app_services_share_the_named_volumes(compose: dict) -> None:
    services = compose["services"]
    assert {"models", "data"} <= set(compose["volumes"])
    for name in ("web", "web-gpu", "train"):
        service = services[name]
        assert {"models:/models", "data:/data"} <= set(service["volumes"]), name
        env = service["environment"]
        assert env["MNIST_CANVAS_MODEL_PATH"] == "/models/mnist-logreg.safetensors", name
        assert env["MNIST_CANVAS_DATA_DIR"] == "/data", name


def test_gpu_profile_reserves_an_nvidia_gpu(compose: dict) -> None:
    gpu = compose["services"]["web-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["environment"]["MNIST_CANVAS_DEVICE"] == "cuda"
    assert "download.pytorch.org/whl/cu" in gpu["build"]["args"]["TORCH_INDEX_URL"]
    # A CUDA build never overwrites the CPU image's tag.
    assert gpu["image"] != compose["services"]["web"]["image"]
    assert "/readyz" in " ".join(_readyz_probe(gpu["healthcheck"]))


def test_train_is_a_one_shot_that_writes_the_served_model(compose: dict) -> None:
    services = compose["services"]
    train = services["train"]
    assert train["profiles"] == ["train"]
    assert train["restart"] == "no"
    command = train["command"]
    assert command[:2] == ["mnist-canvas", "train"]
    served = services["web"]["environment"]["MNIST_CANVAS_MODEL_PATH"]
    assert command[command.index("--out") + 1] == served
    # Serving waits for a retrain when the train profile is on, and ignores it otherwise.
    for name in ("web", "web-gpu"):
        dep = services[name]["depends_on"]["train"]
        assert dep == {"condition": "service_completed_successfully", "required": False}


# --------------------------------------------------------------------------------------------
# The image's start command, run outside docker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _data_dir() -> Path:
    if os.environ.get("MNIST_CANVAS_DATA_DIR"):
        return Path(os.environ["MNIST_CANVAS_DATA_DIR"])
    for candidate in (ROOT.parent / "shared" / "data" / "mnist", Path("/work/shared/data/mnist")):
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "data" / "mnist"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.slow
def test_container_start_command_serves_the_shipped_model(
    runtime: list[Instruction], tmp_path: Path
) -> None:
    # The container, with its paths mapped onto this machine: WORKDIR /app is the checkout, each
    # VOLUME is a folder that starts with what the image copies into it (as a new named volume
    # does), /data is the MNIST folder already here.
    volumes = {v: tmp_path / v.strip("/") for v in volumes_of(runtime) if v != "/data"}
    volumes["/data"] = _data_dir()

    def local(path: str) -> str:
        for inside, outside in volumes.items():
            if path == inside or path.startswith(inside + "/"):
                return str(outside) + path[len(inside) :]
        return path

    for folder in volumes.values():
        folder.mkdir(parents=True, exist_ok=True)
    for _, sources, dest in copies_from_context(runtime):
        if local(dest) != dest:
            for source in sources:
                shutil.copy(ROOT / source, local(dest))

    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_CANVAS_")}
    env.update({k: local(v) for k, v in env_of(runtime).items() if k != "PATH"})
    env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")])
    env["MNIST_CANVAS_DOWNLOAD"] = "false"
    env["MNIST_CANVAS_TRAIN_ON_START"] = "never"  # it must serve the model the image ships
    # In the container the corrections database is a file in the /data volume; here /data is
    # the shared MNIST folder, which no test may write: the database goes to a temp file.
    env["MNIST_CANVAS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'corrections.sqlite3'}"

    cmd = exec_form(only(runtime, "CMD").args, "CMD")
    port = _free_port()
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    executable = shutil.which(cmd[0], path=env["PATH"])
    assert executable, f"{cmd[0]} is not installed in this environment: pip install -e ."

    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen(
        [executable, *cmd[1:]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        status, body = 0, b""
        while time.monotonic() < deadline:
            assert server.poll() is None, f"server exited with {server.returncode}"
            try:
                status, body = _get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"/readyz still answers {status} after 120 s: {body!r}"
        ready = json.loads(body)
        assert ready["model_version"] and ready["device"]
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200

        # `docker stop` sends SIGTERM to PID 1 and kills it 10 s later.
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) is not None
    except BaseException:
        log.seek(0)
        print(log.read())
        raise
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
