"""``osgp decode --keys store:URL``: a capture of the simulated fleet decoded
with the keys its concentrator's store holds, opened with the store's master
key, as with a key file of the same keys."""

from __future__ import annotations

import json

import pytest

from osgp.cli import main
from osgp.concentrator import KeyVault, Store
from osgp.concentrator.engine import KEY_PURPOSE
from osgp.demo import DemoConfig, run_demo

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(meters=30, segments=1, seed=5, out=out, plots=False, capture=True)
    run_demo(cfg, show=False)
    return out


def _report(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_the_store_keys_verify_what_a_key_file_of_them_does(demo, tmp_path, capsys):
    cap, db, master = demo / "capture.pcapng", demo / "concentrator.db", demo / "master.key"
    base = ["decode", str(cap), "--json", "--jobs", "2"]
    unkeyed = _report(capsys, base)
    assert unkeyed["verified"] == 0 and unkeyed["rejected"]["unknown_device"] > 0
    store = Store(f"sqlite:///{db}", vault=KeyVault.from_file(master))
    keys = {}
    for d in store.devices():
        keys[f"{d.subnet}/{d.node}"] = store.key(d.id, KEY_PURPOSE).hex()
        keys[d.neuron_id.hex()] = keys[f"{d.subnet}/{d.node}"]
    store.close()
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps(keys))
    by_file = _report(capsys, [*base, "--keys", str(key_file)])
    by_store = _report(
        capsys, [*base, "--keys", f"store:sqlite:///{db}", "--master-key-file", str(master)]
    )
    timing = ("seconds", "cpu_seconds", "worker_cpu")
    assert {k: v for k, v in by_store.items() if k not in timing} == {
        k: v for k, v in by_file.items() if k not in timing
    }
    assert by_store["verified"] > 100 and "unknown_device" not in by_store["rejected"]


def test_a_wrong_master_key_is_a_clear_error(demo, tmp_path, capsys):
    wrong = tmp_path / "wrong.key"
    wrong.write_text("11" * 32)
    wrong.chmod(0o600)
    argv = ["decode", str(demo / "capture.pcapng"), "--jobs", "1"]
    store = f"store:sqlite:///{demo / 'concentrator.db'}"
    assert main([*argv, "--keys", store, "--master-key-file", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("osgp decode: ") and "master key" in err


def test_a_store_without_keys_is_refused(demo, tmp_path, capsys):
    argv = ["decode", str(demo / "capture.pcapng"), "--jobs", "1"]
    empty = f"store:sqlite:///{tmp_path / 'typo.db'}"
    assert main([*argv, "--keys", empty, "--master-key-file", str(demo / "master.key")]) == 1
    assert "holds no legacy device keys" in capsys.readouterr().err
