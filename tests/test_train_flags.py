"""bin/train's flags: --jit_compile=auto by device class, --jit_compile/--nojit_compile, and a
resumed run keeping its recorded choice."""

import os
import sys

import pytest
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bin"))
import train_flags  # noqa: E402

from qagan_tf import config as config_lib  # noqa: E402
from qagan_tf.update import device  # noqa: E402


@pytest.fixture
def parse():
  def _parse(*args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["bin/train", *args])
    return flags.FLAGS
  yield _parse
  flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("args,expected", [
    ((), "auto"), (("--jit_compile",), True), (("--nojit_compile",), False),
    (("--jit_compile=false",), False), (("--jit_compile=true",), True),
    (("--jit_compile=auto",), "auto")])
def test_jit_compile_takes_auto_true_and_false(parse, args, expected):
  assert parse(*args).jit_compile == expected


def test_an_unknown_jit_compile_value_is_refused(parse):
  with pytest.raises(flags.Error, match="not auto, true or false"):
    parse("--jit_compile=maybe")


@pytest.fixture(autouse=True)
def _the_device_rule(monkeypatch):
  """The rule as a user's process sees it: without the suite's QAGAN_JIT_COMPILE_AUTO=off."""
  monkeypatch.delenv(device.AUTO_ENV, raising=False)


def test_the_environment_sets_what_auto_means_and_a_bad_value_is_named(parse, monkeypatch):
  monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2"})  # The device rule would say on.
  monkeypatch.setattr(device.tf.config, "list_physical_devices", lambda kind=None: [])
  monkeypatch.setenv(device.AUTO_ENV, "off")
  assert train_flags.config_from_flags(parse()).jit_compile is False
  assert device.device_jit_rule() == (False, "QAGAN_JIT_COMPILE_AUTO=off")
  monkeypatch.setattr(device, "cpu_flags", lambda: {"avx512f"})  # It would say off.
  monkeypatch.setenv(device.AUTO_ENV, "On")
  assert train_flags.config_from_flags(parse()).jit_compile is True
  assert device.device_jit_rule(lazy=True)[0] is False  # Lazy and short runs still off.
  assert train_flags.config_from_flags(parse("--max_steps=300")).jit_compile is False
  monkeypatch.setenv(device.AUTO_ENV, "yes")
  with pytest.raises(ValueError, match="QAGAN_JIT_COMPILE_AUTO='yes': use on or off"):
    device.device_jit_rule()


def test_auto_is_resolved_by_the_rule_and_recorded_as_a_boolean(parse, monkeypatch):
  for cpu, on in (({"avx2", "fma"}, True), ({"avx2", "avx512f", "avx512_bf16"}, False),
                  (set(), False), ({"sse4_2"}, False)):
    monkeypatch.setattr(device, "cpu_flags", lambda cpu=cpu: cpu)
    monkeypatch.setattr(device.tf.config, "list_physical_devices", lambda kind=None: [])
    config = train_flags.config_from_flags(parse())
    assert config.jit_compile is on, cpu
    assert config_lib.TrainConfig.from_dict(config.to_dict()).jit_compile is on
    # Lazy regularisation runs slower compiled: auto leaves it off on every CPU.
    assert train_flags.config_from_flags(parse("--gp_every=4")).jit_compile is False
    assert train_flags.config_from_flags(parse("--nojit_compile")).jit_compile is False
    # A short run (a smoke test) does not pay for compiling.
    assert train_flags.config_from_flags(parse("--max_steps=300")).jit_compile is False
  monkeypatch.setattr(device.tf.config, "list_physical_devices",
                      lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
  assert train_flags.config_from_flags(parse()).jit_compile is True  # 1.54x on an H100.
  assert train_flags.config_from_flags(parse("--penalty=niqe",
                                             "--qa_every=2")).jit_compile is False


@pytest.mark.parametrize("args,on", [
    (("--r1_every=16", "--r1_weight=0"), True), (("--r1_every=16", "--r1_weight=0.1"), False),
    (("--qa_every=2",), True), (("--penalty=ssim", "--qa_every=2"), False),
    (("--gp_every=4", "--gp_weight=0"), True), (("--gp_every=4",), False)])
def test_only_an_active_term_makes_the_run_lazy_and_xla_off(parse, monkeypatch, args, on):
  """Laziness is derived once (objective.is_lazy): a term at weight 0, or the quality term
  without a penalty, is not computed at all, so its interval turns nothing lazy and XLA stays
  on (on a GPU here); the Objective the trainer builds says the same."""
  from qagan_tf.objectives import penalties
  from qagan_tf.objectives.objective import Objective
  monkeypatch.setattr(device.tf.config, "list_physical_devices",
                      lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
  config = train_flags.config_from_flags(parse(*args))
  assert config.jit_compile is on
  assert Objective.from_config(config, penalties.build_for_config(config)).lazy is (not on)


def test_a_resumed_run_keeps_its_recorded_choice(parse, monkeypatch):
  monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2"})  # auto would say on.
  for recorded in (True, False):
    saved = config_lib.TrainConfig.create(jit_compile=recorded)
    assert train_flags.config_from_flags(parse(), saved=saved).jit_compile is recorded
  saved = config_lib.TrainConfig.create(jit_compile=False)
  assert train_flags.config_from_flags(parse("--jit_compile"), saved=saved).jit_compile is True


def test_niqe_xla_auto_is_resolved_at_start_recorded_and_kept_on_resume(parse):
  config = train_flags.config_from_flags(parse("--penalty=niqe"))
  assert config.niqe.xla == "off"  # No GPU here.
  assert config_lib.recorded(config)["niqe_xla"] == "off"
  saved = config_lib.TrainConfig.create(penalty="niqe", niqe_xla="on")
  assert train_flags.config_from_flags(parse("--penalty=niqe"), saved=saved).niqe.xla == "on"


def test_settings_of_a_penalty_not_in_use_are_warned_about_and_not_recorded(parse, caplog):
  import logging
  with caplog.at_level(logging.WARNING):
    config = train_flags.config_from_flags(parse("--penalty=wgan_gp", "--niqe_prior=stl_grad",
                                                 "--ssim_window_size=7"))
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1, warnings
  assert "--niqe_prior=stl_grad" in warnings[0] and "--ssim_window_size=7" in warnings[0]
  assert "not recorded in config.json" in warnings[0]
  assert config.niqe.prior == "cifar_grad" and config.ssim.window_size == 8  # The defaults.
  record = config_lib.recorded(config)
  assert not any(k.startswith(("niqe_", "ssim_")) for k in record)
  assert record["penalty"] == "wgan_gp" and "gp_weight" in record
  niqe = train_flags.config_from_flags(parse("--penalty=niqe", "--niqe_prior=stl_grad",
                                             "--resolution=48"))
  assert niqe.niqe.prior == "stl_grad" and config_lib.recorded(niqe)["niqe_prior"] == "stl_grad"
  assert not any(k.startswith("ssim_") for k in config_lib.recorded(niqe))


def test_a_term_setting_the_objective_ignores_is_named_once(parse, caplog):
  """--qa_weight with no quality penalty, or R1's interval without R1, changes nothing: one
  warning says so (issue 45: --penalty=wgan_gp --qa_weight=5 was silent); a setting that is
  used, or a weight of 0 (the term turned off, as the SNGAN configs write it), is no warning."""
  import logging
  with caplog.at_level(logging.WARNING):
    train_flags.config_from_flags(parse("--qa_weight=5", "--r1_every=4"))
  warned = [r.getMessage() for r in caplog.records if "does not use" in r.getMessage()]
  assert len(warned) == 1 and "--qa_weight=5.0" in warned[0] and "--r1_every=4" in warned[0]
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    train_flags.config_from_flags(parse("--penalty=ssim", "--qa_weight=5", "--r1_weight=0.1",
                                        "--r1_every=4", "--qa_every=1"))
    train_flags.config_from_flags(parse("--penalty=none", "--qa_weight=0"))
  assert not [r for r in caplog.records if "does not use" in r.getMessage()]
