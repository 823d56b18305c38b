"""``build_app`` refuses bad settings before anything is deployed, with a message naming the setting."""

from __future__ import annotations

import pytest

from envs.errors import ConfigError
from serving.app import build_app
from tests.test_serving import models  # noqa: F401  (fixture: two exported agents)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"baselines": ["momentum"]}, r"baselines: unknown baseline 'momentum'"),
        ({"fallback": "td3"}, r"fallback: 'td3' is not deployed"),
        ({"split": {"ppo": 1.0, "td3": 1.0}}, r"td3"),
        ({"ingress_replicas": 0}, r"ingress_replicas: 0 must be a whole number of at least 1"),
        ({"ingress_replicas": "2"}, r"ingress_replicas: '2' must be"),
    ],
)
def test_bad_app_settings_are_config_errors(models, args, message):  # noqa: F811
    with pytest.raises(ConfigError, match=message):
        build_app({"models_dir": str(models), **args})


def test_an_empty_models_dir_says_how_to_get_agents(tmp_path):
    with pytest.raises(ConfigError, match="no exported agents.*make demo"):
        build_app({"models_dir": str(tmp_path)})
