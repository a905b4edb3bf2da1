"""Resolving MODEL for all seven frameworks, and refusing unsafe archives."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from neo.errors import ModelLoadError, UsageError
from neo.modelfile import MAX_TAR_MEMBERS, TarLimits, extract_archive, resolve_model


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def load_error(*args, **kwargs) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as info:
        resolve_model(*args, **kwargs)
    assert info.value.exit_code == 3
    assert "\n" not in info.value.message
    return info.value


def ambiguous(*args, **kwargs) -> UsageError:
    with pytest.raises(UsageError) as info:
        resolve_model(*args, **kwargs)
    assert info.value.exit_code == 2
    return info.value


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode="w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_member(name: str, data: bytes = b"model") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special_member(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


# --- single-file frameworks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "framework, filename",
    [
        ("onnx", "resnet.onnx"),
        ("onnx", "RESNET.ONNX"),
        ("pytorch", "model.pt"),
        ("pytorch", "model.pth"),
        ("pytorch", "model.pt2"),
        ("tflite", "mobilenet.tflite"),
        ("keras", "model.h5"),
        ("keras", "model.keras"),
        ("xgboost", "booster.json"),
        ("xgboost", "booster.ubj"),
        ("xgboost", "booster.model"),
        ("xgboost", "booster.bst"),
        ("tensorflow", "frozen_graph.pb"),
        ("tensorflow", "frozen_graph.pbtxt"),
    ],
)
def test_single_model_found_by_file_dir_and_cwd(tmp_path, framework, filename):
    model = touch(tmp_path / "m" / filename)
    touch(tmp_path / "m" / "README.md")
    by_file = resolve_model(str(model), framework, tmp_path)
    by_dir = resolve_model("m", framework, tmp_path)
    by_cwd = resolve_model(None, framework, tmp_path / "m")
    for source in (by_file, by_dir, by_cwd):
        assert source.path == model and source.files == [model] and source.tempdir is None


@pytest.mark.parametrize(
    "framework, patterns",
    [
        ("onnx", "*.onnx"),
        ("pytorch", "*.pt, *.pth, *.pt2"),
        ("tflite", "*.tflite"),
        ("keras", "*.h5, *.keras"),
        ("xgboost", "*.json, *.ubj, *.model, *.bst"),
        ("mxnet", "*-symbol.json (+ *-NNNN.params)"),
        ("tensorflow", "saved_model.pb"),
    ],
)
def test_no_model_lists_the_patterns_searched(tmp_path, framework, patterns):
    touch(tmp_path / "notes.txt")
    err = load_error(None, framework, tmp_path)
    assert patterns in err.message and str(tmp_path) in err.message


@pytest.mark.parametrize(
    "framework, names",
    [
        ("onnx", ["a.onnx", "b.onnx"]),
        ("pytorch", ["a.pt", "b.pth"]),
        ("tflite", ["a.tflite", "b.tflite"]),
        ("keras", ["a.h5", "b.keras"]),
        ("xgboost", ["a.json", "b.ubj"]),
        ("tensorflow", ["a.pb", "b.pb"]),
        ("mxnet", ["a-symbol.json", "b-symbol.json"]),
    ],
)
def test_several_models_ask_for_one(tmp_path, framework, names):
    for name in names:
        touch(tmp_path / name)
    err = ambiguous(None, framework, tmp_path)
    assert "several" in err.message and "as MODEL" in err.message
    assert all(name in err.message for name in names)


def test_missing_path_names_it(tmp_path):
    err = load_error("nope/model.onnx", "onnx", tmp_path)
    assert "nope/model.onnx" in err.message


def test_file_of_another_framework_suggests_it(tmp_path):
    touch(tmp_path / "model.onnx")
    err = load_error("model.onnx", "pytorch", tmp_path)
    assert "looks like a model for ONNX, not PyTorch" in err.message
    assert err.hint == "use --framework onnx"
    err = load_error(None, "tflite", tmp_path)
    assert err.hint and "--framework onnx" in err.hint


def test_xgboost_accepts_any_extension_when_named(tmp_path):
    model = touch(tmp_path / "churn_booster")
    assert resolve_model(str(model), "xgboost", tmp_path).path == model


def test_cwd_search_is_top_level_only_but_mentions_archives(tmp_path):
    touch(tmp_path / "sub" / "model.onnx")
    touch(tmp_path / "model.tar.gz")
    err = load_error(None, "onnx", tmp_path)
    assert err.hint and "model.tar.gz" in err.hint


def test_macos_junk_is_ignored(tmp_path):
    touch(tmp_path / "._model.onnx")
    model = touch(tmp_path / "model.onnx")
    assert resolve_model(None, "onnx", tmp_path).path == model


# --- MXNet --------------------------------------------------------------------------------------


def test_mxnet_symbol_and_params(tmp_path):
    symbol = touch(tmp_path / "resnet-symbol.json")
    params = touch(tmp_path / "resnet-0000.params")
    for arg in (None, str(symbol), str(params)):
        source = resolve_model(arg, "mxnet", tmp_path)
        assert source.path == symbol and source.files == [symbol, params]


def test_mxnet_without_params(tmp_path):
    touch(tmp_path / "net-symbol.json")
    err = load_error(None, "mxnet", tmp_path)
    assert "net-0000.params" in err.message


def test_mxnet_params_without_symbol(tmp_path):
    touch(tmp_path / "net-0003.params")
    err = load_error(None, "mxnet", tmp_path)
    assert err.hint and "symbol.json" in err.hint
    err = load_error("net-0003.params", "mxnet", tmp_path)
    assert "net-symbol.json" in err.message


def test_mxnet_several_epochs_ask_for_one(tmp_path):
    touch(tmp_path / "net-symbol.json")
    touch(tmp_path / "net-0001.params")
    chosen = touch(tmp_path / "net-0010.params")
    err = ambiguous(None, "mxnet", tmp_path)
    assert "net-0001.params" in err.message and "net-0010.params" in err.message
    assert resolve_model(str(chosen), "mxnet", tmp_path).files[1] == chosen


def test_mxnet_json_that_is_not_a_symbol_file(tmp_path):
    touch(tmp_path / "config.json")
    err = load_error("config.json", "mxnet", tmp_path)
    assert "NAME-symbol.json" in err.message


# --- TensorFlow ---------------------------------------------------------------------------------


def make_saved_model(root: Path) -> Path:
    touch(root / "saved_model.pb")
    touch(root / "fingerprint.pb")  # TF 2.13+ writes this beside saved_model.pb
    touch(root / "keras_metadata.pb")
    touch(root / "variables" / "variables.index")
    touch(root / "variables" / "variables.data-00000-of-00001")
    return root


def test_saved_model_directory(tmp_path):
    root = make_saved_model(tmp_path / "sm")
    for arg, base in (("sm", tmp_path), (None, root), (str(root / "saved_model.pb"), tmp_path)):
        source = resolve_model(arg, "tensorflow", base)
        assert source.path == root
        assert source.files[0] == root / "saved_model.pb"
        assert root / "variables" / "variables.index" in source.files


def test_exported_saved_model_is_found_below_the_named_directory(tmp_path):
    root = make_saved_model(tmp_path / "export" / "Servo" / "1700000000")
    assert resolve_model("export", "tensorflow", tmp_path).path == root


def test_pb_files_inside_a_saved_model_belong_to_it(tmp_path):
    root = make_saved_model(tmp_path)
    source = resolve_model(None, "tensorflow", tmp_path)
    assert source.path == root and root / "fingerprint.pb" not in source.files


def test_saved_model_and_frozen_graph_in_one_archive_are_ambiguous(tmp_path):
    members = [file_member("sm/saved_model.pb"), file_member("frozen.pb")]
    archive = make_tar(tmp_path / "model.tar.gz", members)
    err = load_error(str(archive), "tensorflow", tmp_path)
    assert "several" in err.message and "frozen.pb" in err.message and "sm" in err.message


def test_keras_file_given_as_tensorflow(tmp_path):
    touch(tmp_path / "model.h5")
    assert load_error("model.h5", "tensorflow", tmp_path).hint == "use --framework keras"


# --- archives -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_good_archive_extracts(tmp_path, suffix, mode):
    archive = make_tar(
        tmp_path / f"model{suffix}",
        [
            special_member("model", tarfile.DIRTYPE),
            file_member("model/resnet.onnx", b"onnx-bytes"),
            file_member("model/._resnet.onnx", b"junk"),
            file_member("model/labels.txt", b"cat\ndog\n"),
        ],
        mode,
    )
    source = resolve_model(archive.name, "onnx", tmp_path)
    assert source.tempdir is not None
    assert source.path.name == "resnet.onnx" and source.path.read_bytes() == b"onnx-bytes"
    extracted = Path(source.tempdir.name)
    assert source.path.is_relative_to(extracted)
    source.cleanup()
    assert not extracted.exists()


def test_archive_with_saved_model(tmp_path):
    members = [
        file_member("export/1/saved_model.pb"),
        file_member("export/1/variables/variables.index"),
        file_member("export/1/fingerprint.pb"),
    ]
    archive = make_tar(tmp_path / "model.tar.gz", members)
    with resolve_model(str(archive), "tensorflow", tmp_path) as source:
        assert source.path.name == "1" and (source.path / "saved_model.pb").is_file()


def test_archive_with_mxnet_pair(tmp_path):
    members = [file_member("net-symbol.json", b"{}"), file_member("net-0000.params")]
    archive = make_tar(tmp_path / "model.tar.gz", members)
    with resolve_model(str(archive), "mxnet", tmp_path) as source:
        assert [p.name for p in source.files] == ["net-symbol.json", "net-0000.params"]


def test_archive_with_two_models_is_a_load_error(tmp_path):
    members = [file_member("a.onnx"), file_member("b.onnx")]
    archive = make_tar(tmp_path / "model.tar.gz", members)
    err = load_error(str(archive), "onnx", tmp_path)
    assert "a.onnx" in err.message and "b.onnx" in err.message


def test_archive_without_the_model_names_the_patterns(tmp_path):
    archive = make_tar(tmp_path / "model.tar.gz", [file_member("model.pt")])
    err = load_error(str(archive), "onnx", tmp_path)
    assert "*.onnx" in err.message and err.hint and "--framework pytorch" in err.hint


@pytest.mark.parametrize(
    "member, fact",
    [
        (file_member("../evil.onnx"), "'..'"),
        (file_member("model/../../evil.onnx"), "'..'"),
        (file_member("/tmp/evil.onnx"), "absolute path"),
        (file_member("C:/evil.onnx"), "absolute path"),
        (special_member("link.onnx", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (special_member("rel.onnx", tarfile.SYMTYPE, "model.onnx"), "symbolic link"),
        (special_member("hard.onnx", tarfile.LNKTYPE, "model.onnx"), "hard link"),
        (special_member("dev", tarfile.CHRTYPE), "device"),
        (special_member("blk", tarfile.BLKTYPE), "device"),
        (special_member("pipe", tarfile.FIFOTYPE), "FIFO"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink", "rel-symlink", "hardlink",
         "chardev", "blockdev", "fifo"],
)  # fmt: skip
def test_unsafe_archives_are_refused_before_extraction(tmp_path, member, fact):
    archive = make_tar(tmp_path / "model.tar.gz", [file_member("model.onnx"), member])
    temp_parent = tmp_path / "tmp"
    temp_parent.mkdir()
    err = load_error(str(archive), "onnx", tmp_path, temp_parent=temp_parent)
    assert "refusing to extract model.tar.gz" in err.message and fact in err.message
    # Nothing was written: not the member, not even the safe file before it.
    assert list(temp_parent.iterdir()) == []
    assert not (tmp_path / "evil.onnx").exists()


def test_too_many_members(tmp_path):
    members = [file_member(f"f{i}.txt", b"") for i in range(MAX_TAR_MEMBERS)]
    members.append(file_member("model.onnx"))
    archive = make_tar(tmp_path / "many.tar", members, "w")
    err = load_error(str(archive), "onnx", tmp_path)
    assert f"more than {MAX_TAR_MEMBERS} members" in err.message


def test_exactly_the_member_limit_is_fine(tmp_path):
    members = [file_member(f"f{i}.txt", b"") for i in range(9)] + [file_member("m.onnx")]
    archive = make_tar(tmp_path / "ok.tar", members, "w")
    limits = TarLimits(max_members=10)
    with resolve_model(str(archive), "onnx", tmp_path, limits=limits) as source:
        assert source.path.name == "m.onnx"


def test_size_limit(tmp_path):
    archive = make_tar(tmp_path / "big.tar.gz", [file_member("m.onnx", b"0" * 4096)])
    err = load_error(str(archive), "onnx", tmp_path, limits=TarLimits(max_total_bytes=4095))
    assert "4095 bytes" in err.message
    with resolve_model(str(archive), "onnx", tmp_path, limits=TarLimits(max_total_bytes=4096)):
        pass


@pytest.mark.parametrize("data", [b"", b"this is not a tar file at all" * 40, b"\x1f\x8b\x08junk"])
def test_corrupt_archive(tmp_path, data):
    archive = touch(tmp_path / "model.tar.gz", data)
    err = load_error(str(archive), "onnx", tmp_path)
    assert "model.tar.gz" in err.message


def test_truncated_archive(tmp_path):
    archive = make_tar(tmp_path / "model.tar.gz", [file_member("m.onnx", b"x" * 100_000)])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    load_error(str(archive), "onnx", tmp_path)


def test_empty_archive(tmp_path):
    archive = make_tar(tmp_path / "model.tar.gz", [])
    assert "empty" in load_error(str(archive), "onnx", tmp_path).message


def test_extract_archive_directly(tmp_path):
    archive = make_tar(tmp_path / "a.tar", [file_member("d/x.bin", b"123")], "w")
    dest = tmp_path / "out"
    dest.mkdir()
    extract_archive(archive, dest)
    assert (dest / "d" / "x.bin").read_bytes() == b"123"
