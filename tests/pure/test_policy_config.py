"""The keys of issue 14's policies: `follow`, `prereleases`, `min_age` and `verify`, read as the
run reads them; every bad value is an error naming file and key."""

import pytest

from tests.pure.test_config import write
from updater.config import load
from updater.errors import ConfigError

pytestmark = pytest.mark.pure

UNIT = '[units."app.service"]\nimage = "ghcr.io/acme/app:current"\n'


@pytest.fixture
def main_file(tmp_path):
    return tmp_path / "config.toml"


def test_follow_prereleases_and_min_age(main_file):
    write(main_file, UNIT + 'follow = "semver:^1.2"\nprereleases = true\nmin_age = "2h"\n')
    [unit] = load(main_file).units
    assert str(unit.policy.follow) == "semver:^1.2"
    assert unit.policy.prereleases is True
    assert unit.policy.min_age == 7200
    assert (
        unit.policy.follow.newest(["1.1.0", "1.2.0", "1.3.0-rc.1", "2.0.0"], True) == "1.3.0-rc.1"
    )


def test_defaults_carry_min_age_and_a_unit_overrides_it(main_file):
    write(
        main_file,
        "[defaults]\nmin_age = 600\n" + UNIT + '[units."b.service"]\nimage = "b"\nmin_age = 0\n',
    )
    a, b = load(main_file).units
    assert a.policy.min_age == 600 and b.policy.min_age == 0
    assert a.policy.follow is None and a.policy.verify is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('follow = "^1.2"\n', "units.\"app.service\".follow: '^1.2' is not a tag policy"),
        (
            'follow = "semver:>=1 <2 || 3.x.5"\n',
            "config.toml: units.\"app.service\".follow: '>=1 <2 || 3.x.5' is not a semver range "
            "('3.x.5' is not a comparator): npm's, such as",
        ),
        ('follow = "regex:("\n', 'units."app.service".follow:'),
        ("follow = 1\n", 'units."app.service".follow: must be a string like "semver:^1.2"'),
        ('prereleases = "yes"\n', "units.\"app.service\".prereleases: 'yes' is not true or false"),
        ('min_age = "2 hours"\n', "units.\"app.service\".min_age: '2 hours' is not a duration"),
        ("min_age = -1\n", 'units."app.service".min_age: -1 is not a duration'),
        ("verify = true\n", 'units."app.service".verify: must be a table'),
        ('verify = {kee = "/k.pub"}\n', "unknown key 'units.\"app.service\".verify.kee'"),
        ('verify = {key = "k.pub"}\n', "verify.key: 'k.pub' must be an absolute path"),
        ('verify = {identity_regexp = "("}\n', "verify.identity_regexp: not a regular expression"),
        ('verify = {issuer = ""}\n', "verify.issuer: must be a non-empty string"),
    ],
)
def test_bad_policy_values_name_file_and_key(main_file, text, message):
    write(main_file, UNIT + text)
    with pytest.raises(ConfigError) as err:
        load(main_file)
    assert message in str(err.value)
    assert str(main_file) in str(err.value)


def test_a_pinned_image_follows_no_tag(main_file):
    pinned = '[units."app.service"]\nimage = "ghcr.io/acme/app@sha256:' + "a" * 64 + '"\n'
    write(main_file, pinned + 'follow = "semver:^1"\n')
    with pytest.raises(ConfigError, match="a pinned image"):
        load(main_file)


@pytest.fixture
def keys(tmp_path):
    from testbed.signing import TestCA, public_pem

    ca = TestCA()
    key, _ = ca.leaf()
    public = write(tmp_path / "cosign.pub", public_pem(key).decode())
    roots = write(tmp_path / "fulcio.pem", ca.ca_pem().decode())
    return public, roots


def test_a_unit_verify_wins_over_its_registry_which_wins_over_defaults(main_file, keys):
    public, roots = keys
    keyless = (
        f'identity = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"\n'
        f'issuer = "https://token.actions.githubusercontent.com"\nca_file = "{roots}"\n'
    )
    write(
        main_file,
        f'[defaults.verify]\nkey = "{public}"\n'
        f'[registries."ghcr.io".verify]\n{keyless}'
        '[units."a.service"]\nimage = "ghcr.io/acme/a"\n'
        '[units."b.service"]\nimage = "docker.io/acme/b"\n'
        f'[units."c.service"]\nimage = "ghcr.io/acme/c"\nverify = {{key = "{public}"}}\n',
    )
    a, b, c = load(main_file).units
    assert a.policy.verify.identity.endswith("@refs/heads/main") and a.policy.verify.key is None
    assert b.policy.verify.key == public
    assert c.policy.verify.key == public and c.policy.verify.identity is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('{key = "/nonexistent.pub"}', "verify: "),
        ('{key = "KEY", identity = "x"}', "key and identity are exclusive"),
        ('{identity = "x", issuer = "y"}', "keyless verification needs ca_file"),
        ('{identity = "x", ca_file = "ROOTS"}', "needs issuer or issuer_regexp"),
        ('{key = "ROOTS"}', "verify: "),
    ],
)
def test_bad_verification_policies_name_file_and_key(main_file, keys, table, message):
    public, roots = keys
    table = table.replace("KEY", str(public)).replace("ROOTS", str(roots))
    write(main_file, UNIT + f"verify = {table}\n")
    with pytest.raises(ConfigError) as err:
        load(main_file)
    assert f'{main_file}: units."app.service".verify: ' in str(err.value)
    assert message in str(err.value)
