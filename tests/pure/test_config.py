"""The configuration loader: every kind of bad input gets a message naming file and key."""

import os
from pathlib import Path

import pytest

from updater.cli import main
from updater.config import Policy, load
from updater.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def main_file(tmp_path):
    return write(tmp_path / "config.toml", "[defaults]\nsettle = 2\n")


def test_main_file_and_config_d_in_name_order(main_file):
    d = main_file.parent / "config.d"
    write(d / "b.toml", '[units."b.service"]\nimage = "ghcr.io/acme/b:prod"\n')
    write(d / "a.toml", '[units."a.service"]\nimage = "nginx"\ncontainer = "web"\nsettle = 0\n')
    write(d / "ignored.txt", "not toml")
    config = load(main_file)
    assert [u.name for u in config.units] == ["a.service", "b.service"]
    a, b = config.units
    assert a.container == "web" and b.container == "b"
    assert a.policy == Policy(settle=0) and b.policy == Policy(settle=2)
    assert str(a.image) == "docker.io/library/nginx:latest"
    assert b.source == d / "b.toml"


def test_registry_settings(main_file, tmp_path):
    ca = write(tmp_path / "ca.pem", "pem")
    write(
        main_file,
        f'[registries."reg.example.com:5000"]\ninsecure = true\nca_file = "{ca}"\n',
    )
    config = load(main_file)
    assert config.registry("reg.example.com:5000").insecure
    assert config.registry("reg.example.com:5000").ca_file == ca
    assert not config.registry("ghcr.io").insecure


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[defaults]\nsetle = 1\n",
            "unknown key 'defaults.setle'; accepted: fleet, follow, health_command, health_timeout,",
        ),
        (
            "colour = 1\n",
            "unknown key 'colour'; accepted: defaults, docker_config, fleet, groups, metrics, notify,",
        ),
        ('[notify]\non = ["done"]\n', "notify.on: ['done'] is not a list of unchanged, updated"),
        ('[notify]\nwebhook = "ftp://x"\n', "notify.webhook: must be an http(s) URL"),
        ("[notify]\nslack = [1]\n", "notify.slack: must be an http(s) URL"),
        ('[notify]\ncommand = "notify-send"\n', "must be an absolute path"),
        ('[notify]\ncommand = "/bin/x \'open"\n', "notify.command: No closing quotation"),
        ("[notify]\ntimeout = 0\n", "notify.timeout: 0 is not a number of seconds"),
        ('[notify]\nemail = "x"\n', "unknown key 'notify.email'"),
        ('[notify]\nurls = ["not a url"]\n', "notify.urls: must be a notification URL"),
        ('[notify]\nremind = "soon"\n', "notify.remind: 'soon' is not a duration"),
        ("[notify]\nremind = -1\n", "notify.remind: -1 is not a duration"),
        (
            '[notify]\nping_fail = "https://hc.example/x/fail"\n',
            "notify.ping_fail: needs one notify.ping URL",
        ),
        ('[notify]\nping = "hc.example/x"\n', "notify.ping: must be an http(s) URL"),
        (
            '[metrics]\npath = "rel.prom"\n',
            "metrics.path: must be an absolute path ending in .prom",
        ),
        ('[metrics]\nfile = "/x.prom"\n', "unknown key 'metrics.file'"),
        ('[units."a.service"]\nimage = "x"\nport = 1\n', "unknown key 'units.\"a.service\".port'"),
        ('[units."a.service"]\ncontainer = "a"\n', 'missing key "image"'),
        ('[units."a.service"]\nimage = 3\n', ".image: must be a string"),
        ('[units."a.service"]\nimage = "Bad"\n', "repository name component 'Bad'"),
        ('[units."a"]\nimage = "x"\n', 'did you mean "a.service"?'),
        ('[units."a.service"]\nimage = "x"\ncontainer = "-x"\n', "is not a container name"),
        ("[defaults]\nhealth_timeout = 0\n", "health_timeout: 0 is not a number of seconds > 0"),
        ("[defaults]\nhealth_timeout = true\n", "health_timeout: True is not a number"),
        ('[defaults]\nsettle = "5"\n', "settle: '5' is not a number of seconds >= 0"),
        ("[defaults]\nrollback = 1\n", "rollback: 1 is not true or false"),
        ("[defaults]\nkeep_images = 1.5\n", "keep_images: 1.5 is not a whole number from 0 to 100"),
        ("[defaults]\nkeep_images = -1\n", "keep_images: -1 is not a whole number"),
        ('[units."a.service"]\nimage = "x"\nmode = "auto!"\n', "mode: 'auto!' is not \"auto\""),
        ("defaults = 3\n", "defaults: must be a table, not int"),
        ("[units]\nx = 1\n", 'units."x": must be a table'),
        ('[registries."h.io"]\ninsecure = "yes"\n', "insecure: 'yes' is not true or false"),
        ('[registries."h.io"]\nca_file = "rel.pem"\n', "ca_file: must be an absolute path"),
        ('[registries."h.io"]\nca_file = "/nonexistent.pem"\n', "does not exist or is unreadable"),
        ('[registries."h.io"]\nverfy = false\n', "unknown key 'registries.\"h.io\".verfy'"),
        ('[registries."a b"]\n', "not a registry host"),
        ("[units\n", "not valid TOML"),
        ("docker_config = 1\n", "docker_config: must be the absolute path of a Docker config"),
        ('docker_config = "config.json"\n', "docker_config: must be the absolute path"),
        ('docker_config = "/nonexistent/config.json"\n', "cannot read /nonexistent/config.json"),
        ('docker_config = "/tmp"\n', "/tmp is a directory; name the file in it (/tmp/config.json)"),
        ("docker_config = {}\n", "docker_config: must be the absolute path"),
        (
            '[registries."h.io"]\ndocker_config = "/x.json"\n',
            "it is a top-level key: put it above the first [table]",
        ),
    ],
)
def test_bad_configuration_names_file_and_key(main_file, text, message):
    write(main_file, text)
    with pytest.raises(ConfigError) as err:
        load(main_file)
    assert message in str(err.value)
    assert str(main_file) in str(err.value) or "defined twice" in str(err.value)


def test_unit_defined_twice_names_both_files(main_file):
    write(main_file, '[units."a.service"]\nimage = "x"\n')
    other = write(main_file.parent / "config.d" / "z.toml", '[units."a.service"]\nimage = "y"\n')
    with pytest.raises(ConfigError) as err:
        load(main_file)
    assert str(main_file) in str(err.value) and str(other) in str(err.value)


def test_missing_main_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nope.toml")


def test_bad_configuration_exits_2_before_anything(main_file, capsys, tmp_path):
    write(main_file, "[defaults]\nsetle = 1\n")
    state = tmp_path / "state"
    assert main(["--config", str(main_file), "--state-dir", str(state), "run"]) == 2
    assert main(["--config", str(main_file), "check", "--json"]) == 2
    assert "unknown key 'defaults.setle'" in capsys.readouterr().err
    assert not state.exists()


def test_add_and_remove_write_config_d(main_file, capsys):
    args = ["--config", str(main_file)]
    assert main([*args, "add", "app.service", "--image", "ghcr.io/acme/app:prod"]) == 0
    written = main_file.parent / "config.d" / "app.service.toml"
    assert written.read_text() == '[units."app.service"]\nimage = "ghcr.io/acme/app:prod"\n'
    assert (
        main([*args, "add", "app.service", "--image", "ghcr.io/acme/app:v2", "--container", "c"])
        == 0
    )
    assert load(main_file).units[0].container == "c"
    assert main([*args, "remove", "app.service"]) == 0
    assert not written.exists()
    assert main([*args, "remove", "app.service"]) == 2
    assert "not configured" in capsys.readouterr().err


def test_add_validates_as_the_run_reads(main_file, capsys):
    write(main_file, '[units."app.service"]\nimage = "nginx"\n')
    args = ["--config", str(main_file)]
    assert main([*args, "add", "new.service", "--image", "UPPER"]) == 2
    assert main([*args, "add", "app.service", "--image", "nginx:2"]) == 2
    assert main([*args, "add", "bad name", "--image", "nginx"]) == 2
    assert main([*args, "remove", "app.service"]) == 2
    err = capsys.readouterr().err
    assert "repository name component 'UPPER'" in err
    assert "defined twice" in err
    assert "not a systemd service name" in err
    assert "not by `updater add`" in err
    assert not (main_file.parent / "config.d").exists() or not any(
        (main_file.parent / "config.d").iterdir()
    )


def test_unknown_unit_on_command_line_is_usage_error(main_file, capsys):
    write(main_file, '[units."app.service"]\nimage = "nginx"\n')
    assert main(["--config", str(main_file), "check", "--unit", "nope.service"]) == 2
    assert "--unit nope.service: not configured; configured: app.service" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["add", "x.service"]) == 2


def test_notify_and_metrics(main_file):
    write(
        main_file,
        '[notify]\non = ["failed"]\nwebhook = "http://127.0.0.1:9/hook"\n'
        'slack = ["https://hooks.slack.com/services/T/B/X"]\ncommand = "/usr/bin/logger -t up"\n'
        '[metrics]\npath = "/var/lib/node_exporter/updater.prom"\n',
    )
    config = load(main_file)
    assert config.notify.on == ("failed",)
    assert config.notify.webhook == ("http://127.0.0.1:9/hook",)
    assert config.notify.command == ("/usr/bin/logger", "-t", "up")
    assert config.metrics == Path("/var/lib/node_exporter/updater.prom")
    assert load(write(main_file, "")).notify.targets == 0


def test_notify_urls_reminders_and_ping(main_file):
    config = load(
        write(
            main_file,
            '[notify]\nurls = "ntfy://ntfy.sh/acme"\nremind = "1h30m"\nping = "https://hc-ping.com/u/"\n',
        )
    )
    assert config.notify.urls == ("ntfy://ntfy.sh/acme",) and config.notify.targets == 1
    assert config.notify.remind == 5400
    assert (config.notify.ping, config.notify.ping_fail) == (
        "https://hc-ping.com/u/",
        "https://hc-ping.com/u/fail",
    )
    defaults = load(write(main_file, "")).notify
    assert defaults.remind == 86400 and "recovered" in defaults.on and not defaults.ping


def test_docker_config_key(main_file, tmp_path):
    docker = write(tmp_path / "home/core/.docker/config.json", "{}")
    write(main_file, f'docker_config = "{docker}"\n[defaults]\nsettle = 2\n')
    assert load(main_file).docker_config == docker
    assert load(write(main_file, "")).docker_config is None


def test_docker_config_in_two_files_names_both(main_file, tmp_path):
    docker = write(tmp_path / "config.json", "{}")
    write(main_file, f'docker_config = "{docker}"\n')
    other = write(main_file.parent / "config.d" / "z.toml", f'docker_config = "{docker}"\n')
    with pytest.raises(ConfigError) as err:
        load(main_file)
    assert f"docker_config is defined twice: in {main_file} and in {other}" in str(err.value)


def test_unreadable_docker_config_says_why(main_file, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    docker = write(tmp_path / "config.json", "{}")
    docker.chmod(0)
    write(main_file, f'docker_config = "{docker}"\n')
    with pytest.raises(ConfigError, match=f"{main_file}: docker_config: cannot read {docker}: "):
        load(main_file)
