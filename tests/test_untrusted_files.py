"""Every file a user hands us is untrusted: crafted .keras, YAML, .npy, features.json and CSV files
are refused by name, and nothing in them runs (a marker file is never created)."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from asc_keras._runtime import keras
from asc_keras.cli import main


def _crafted_keras(tmp_path, marker):
    """Two .keras files that would run code if loaded unsafely: a Lambda with a Python function,
    and a config whose layer names os.system."""
    lam = tmp_path / "lambda.keras"
    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Lambda(lambda x: x * 2)(inp)).save(lam)
    ok = tmp_path / "ok.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(ok)
    with zipfile.ZipFile(ok) as z:
        files = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(files["config.json"])
    cfg["config"]["layers"][-1].update(module="os", class_name="system", config=f"touch {marker}")
    files["config.json"] = json.dumps(cfg).encode()
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(evil, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return [lam, evil]


def test_crafted_keras_files_are_refused_by_name_everywhere(tmp_path, capsys):
    marker = tmp_path / "ran"
    (tmp_path / "a.wav").write_bytes(b"")
    for crafted in _crafted_keras(tmp_path, marker):
        assert main(["complexity", str(crafted)]) == 2
        assert f"{crafted}: cannot load" in capsys.readouterr().err
        assert main(["predict", str(crafted), str(tmp_path / "a.wav")]) == 2
        assert f"{crafted}: cannot load" in capsys.readouterr().err
        argv = ["run", "--system", "1", "--profile", "quick", "--work", str(tmp_path / "w"), "--out",
                str(tmp_path / "o"), "--set", f"teachers.pretrained_mobilenetv2={crafted}"]  # fmt: skip
        assert main(argv) == 2 and f"{crafted}: cannot load" in capsys.readouterr().err
        assert not (tmp_path / "w").exists()  # refused before any work
    assert not marker.exists()


def test_yaml_with_python_tags_is_refused(tmp_path, capsys):
    marker = tmp_path / "ran"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    argv = ["run", "--system", "1", "--out", str(tmp_path / "o"), "--set", f"optim.epochs={tag}"]
    assert main(argv) == 2 and "not a plain YAML value" in capsys.readouterr().err
    out = tmp_path / "o2"
    out.mkdir()
    (out / "config.yaml").write_text(f"run: {tag}\n")  # a crafted output folder
    argv = ["run", "--system", "1", "--out", str(out), "--data", str(tmp_path)]
    assert (
        main(argv) == 2
        and f"{out / 'config.yaml'}: not a run's configuration" in capsys.readouterr().err
    )
    assert not marker.exists()


def test_pickled_npy_files_are_refused_not_unpickled(tmp_path):
    from asc_keras.data import DataError
    from asc_keras.distill.targets import SoftTargets
    from asc_keras.features.cache import FeatureCache

    np.save(tmp_path / "t.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "t.json").write_text(json.dumps({"items": ["a"], "meta": {}}))
    with pytest.raises(ValueError, match="t.npy: not stored teacher outputs"):
        SoftTargets.load(tmp_path / "t.npy")
    cache = tmp_path / "clips-x"
    cache.mkdir()
    np.save(cache / "features.npy", np.array([object()] * 2, dtype=object), allow_pickle=True)
    (cache / "items.csv").write_text("item\na\nb\n")
    meta = {"config": {}, "shape": [2], "dtype": "float16"}
    (cache / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="clips-x"):
        FeatureCache.open(cache)


def test_a_crafted_features_json_is_refused_by_name(tmp_path):
    from asc_keras.evaluate.predict import read_feature_config

    for content, why in (('{"n_mels": "x"}', "n_mels"), ('{"sample_rate": 16000, "evil": 1}', "unknown"),
                         ("[1, 2]", "JSON object"), ('{"n_fft": 10000000}', "n_fft")):  # fmt: skip
        (tmp_path / "features.json").write_text(content)
        with pytest.raises(ValueError, match=f"features.json: not a feature settings file.*{why}"):
            read_feature_config(tmp_path / "features.json")


def test_csv_rows_naming_files_outside_the_data_set_are_refused(tiny_tau, tmp_path):
    from asc_keras.data import DataError, read_tau

    root = tmp_path / "dev"
    shutil.copytree(tiny_tau, root, ignore=shutil.ignore_patterns("audio"))
    (root / "audio").symlink_to(tiny_tau / "audio")
    meta = (root / "meta.csv").read_text().splitlines()
    for name in ("/etc/passwd", "audio/../../secret-x-1-2-3-a.wav"):
        row = meta[1].split("\t")
        (root / "meta.csv").write_text(
            "\n".join([meta[0], "\t".join([name, *row[1:]]), *meta[2:]]) + "\n"
        )
        with pytest.raises(DataError, match="row 2 names .* outside the data set folder"):
            read_tau(root)


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.alpha=abc", "distill.alpha must be a finite number, got 'abc' (str)"),
        ("optim.peak_lr=.inf", "optim.peak_lr must be a finite number, got inf (float)"),
        ("optim.peak_lr=inf", "optim.peak_lr must be a finite number, got inf (float)"),
        (
            "distill.temperature=.nan",
            "distill.temperature must be a finite number, got nan (float)",
        ),
        ("distill.swap_wrong=maybe", "distill.swap_wrong must be true or false, got 'maybe' (str)"),
        (
            "augment.freq_mixstyle=2",
            "augment.freq_mixstyle is the share of clips restyled, in [0, 1]; got 2",
        ),
        (
            "augment.freq_mixstyle_alpha=0",
            "augment.freq_mixstyle_alpha is Beta(a, a)'s a, above 0; got 0",
        ),
        ("optim.steps=1.5", "optim.steps must be a whole number or null, got 1.5 (float)"),
        ("optim.steps=true", "optim.steps must be a whole number or null, got True (bool)"),
        (
            "teachers.names=cnn",
            "teachers.names must be a list of strings ([a, b] in YAML), got 'cnn' (str)",
        ),
        (
            "distill.target_source=clips",
            "distill.target_source must be one of 'auto', 'recording', 'clip', got 'clips' (str)",
        ),
        (
            "distill.ensemble=mean",
            "distill.ensemble must be one of 'probabilities', 'logits', got 'mean' (str)",
        ),
        (
            "teachers.names=[cnn, 3]",
            "teachers.names must be a list of strings ([a, b] in YAML), got ('cnn', 3) (tuple)",
        ),
        # A teacher's own view: a known teacher, a mapping, only the view settings, each typed.
        (
            "teachers.views.mobilenet.mel_pool=1",
            "teachers.views.mobilenet: no teacher 'mobilenet'; use mobilenetv2, cnn, bcresnet, or "
            "one of them with a label of ASCII letters and digits after '_' (cnn_clips)",
        ),
        (
            "teachers.names=[cnn, rnn_x]",
            "teachers.names: no teacher 'rnn_x'; use mobilenetv2, cnn, bcresnet, or one of them "
            "with a label of ASCII letters and digits after '_' (cnn_clips)",
        ),
        (  # a name is a folder name in the work folder: a crafted label must not leave it
            "teachers.names=[cnn, cnn_../../evil]",
            "teachers.names: no teacher 'cnn_../../evil'; use mobilenetv2, cnn, bcresnet, or one of "
            "them with a label of ASCII letters and digits after '_' (cnn_clips)",
        ),
        (
            "teachers.views.cnn_/x.steps=1",
            "teachers.views.cnn_/x: no teacher 'cnn_/x'; use mobilenetv2, cnn, bcresnet, or one of "
            "them with a label of ASCII letters and digits after '_' (cnn_clips)",
        ),
        (
            "teachers.names=[cnn, bcresnet, cnn]",
            "teachers.names: a teacher named twice in ['cnn', 'bcresnet', 'cnn']",
        ),
        (
            "teachers.views.cnn=1",
            "teachers.views.cnn must be a mapping of settings ({mel_pool: 1} in YAML), got 1 (int)",
        ),
        (
            "teachers.views.cnn.cnn_width=24",
            "teachers.views.cnn: cnn_width cannot differ per teacher; these can: crop_seconds, "
            "masks, mel_pool, mixup, steps, batch_size, peak_lr",
        ),
        (
            "teachers.views.cnn.peak_lr=.nan",
            "teachers.views.cnn.peak_lr must be a finite number, got nan (float)",
        ),
        # A teacher's own pooling or input: a known teacher, a value its builder takes.
        (
            "teachers.pooling.cnn=maxmean",
            "teachers.pooling.cnn must be one of 'mean', 'max+mean', 'bands', got 'maxmean' (str)",
        ),
        (
            "teachers.input_norm.bcresnet_clips=true",
            "teachers.input_norm.bcresnet_clips must be one of 'none', 'residual', 'both', got "
            "True (bool)",
        ),
        (
            "teachers.pooling.cnn-clips=bands",
            "teachers.pooling.cnn-clips: no teacher 'cnn-clips'; use mobilenetv2, cnn, bcresnet, or "
            "one of them with a label of ASCII letters and digits after '_' (cnn_clips)",
        ),
        (
            "teachers.views.bcresnet.crop_seconds=whole",
            "teachers.views.bcresnet.crop_seconds must be a finite number or null, got 'whole' (str)",
        ),
    ],
)
def test_settings_of_the_wrong_type_are_refused_naming_the_setting(override, message):
    from asc_keras.presets import parse_overrides, system_config

    with pytest.raises(ValueError) as e:
        system_config(1, "quick", parse_overrides([override]))
    assert str(e.value) == f"configuration (system1.yaml <- quick.yaml <- --set): {message}"


def test_a_yaml_file_with_a_wrongly_typed_value_is_refused_and_numbers_read(tmp_path):
    from asc_keras.presets import CONFIG_DIR, load_system_config, parse_overrides

    system = CONFIG_DIR / "systems" / "system1.yaml"
    crafted = tmp_path / "profile.yaml"
    crafted.write_text("teachers:\n  masks: 'no'\n")  # a string, not YAML 1.1's false
    with pytest.raises(
        ValueError, match=r"profile.yaml <- --set\): teachers.masks must be true or false"
    ):
        load_system_config(system, crafted)
    # YAML 1.1 reads 3e-3 (no dot) as a string: a float setting takes it as the number it is.
    cfg = load_system_config(
        system, None, parse_overrides(["optim.peak_lr=3e-3", "optim.steps=null"])
    )
    assert cfg.optim.peak_lr == 0.003 and isinstance(cfg.optim.peak_lr, float)
    assert cfg.optim.steps is None
