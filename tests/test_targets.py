"""Targets: every one must be a CPU/feature set the bundled LLVM accepts without warnings."""

from __future__ import annotations

import llvmlite.binding as llvm
import pytest

from neo.errors import UsageError
from neo.targets import (
    BASE_FEATURES,
    KNOWN_CPUS,
    TRIPLES,
    UNSUPPORTED_TARGETS,
    CompilerOptions,
    all_targets,
    get_target,
    host_target,
    llvm_diagnostics,
    parse_compiler_options,
    parse_target_platform,
    resolve_target,
)

NEO_DEVICES = [
    "lambda", "ml_m4", "ml_m5", "ml_m6g", "ml_c4", "ml_c5", "ml_c6g", "jetson_tx1", "jetson_tx2",
    "jetson_nano", "jetson_xavier", "rasp3b", "rasp4b", "imx8qm", "deeplens", "rk3399", "rk3288",
    "aisage", "sbe_c", "qcs605", "qcs603", "sitara_am57x", "amba_cv2", "amba_cv22", "amba_cv25",
    "jacinto_tda4vm", "imx8mplus",
]  # fmt: skip
REFUSED = [
    "ml_p2", "ml_p3", "ml_g4dn", "ml_inf1", "ml_inf2", "ml_trn1", "ml_eia2", "x86_win32",
    "x86_win64", "coreml",
]  # fmt: skip

llvm.initialize_all_targets()
llvm.initialize_all_asmprinters()


def usage_error(call, *args) -> UsageError:
    with pytest.raises(UsageError) as info:
        call(*args)
    assert info.value.exit_code == 2
    assert "\n" not in info.value.message
    return info.value


# --- the table ----------------------------------------------------------------------------------


def test_every_neo_cpu_device_is_a_target_and_the_rest_are_refused():
    names = {t.name for t in all_targets()}
    assert set(NEO_DEVICES) <= names
    assert {"x86_64", "arm64", "armv7", "host"} <= names
    assert set(REFUSED) == set(UNSUPPORTED_TARGETS)
    assert not names & set(REFUSED)


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.name)
def test_every_target_creates_an_llvm_target_machine_without_warnings(target):
    assert target.triple == TRIPLES[target.arch]
    machine = llvm.Target.from_triple(target.triple).create_target_machine(
        cpu=target.cpu, features=target.features
    )
    assert machine.triple == target.triple
    # LLVM only warns (and then ignores) an unknown CPU or feature; there must be no such warning.
    assert llvm_diagnostics(target.triple, target.cpu, target.features) == []


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.name)
def test_every_target_emits_code(target):
    module = llvm.parse_assembly(
        "define float @axpy(float %a, float %x, float %y) {\n"
        "  %m = fmul float %a, %x\n  %r = fadd float %m, %y\n  ret float %r\n}\n"
    )
    module.triple = target.triple
    obj = target.create_target_machine(opt=2).emit_object(module)
    assert obj[:4] == b"\x7fELF"


@pytest.mark.parametrize(
    "name, arch, cpu, bits",
    [
        ("x86_64", "x86_64", "x86-64-v3", 256),
        ("arm64", "aarch64", "generic", 128),
        ("aarch64", "aarch64", "generic", 128),
        ("armv7", "armv7", "generic", 128),
        ("rasp3b", "armv7", "cortex-a53", 128),
        ("rasp4b", "aarch64", "cortex-a72", 128),
        ("jetson_nano", "aarch64", "cortex-a57", 128),
        ("jetson_xavier", "aarch64", "carmel", 128),
        ("ml_c4", "x86_64", "haswell", 256),
        ("ml_m4", "x86_64", "broadwell", 256),
        ("ml_c5", "x86_64", "skylake-avx512", 512),
        ("ml_m5", "x86_64", "skylake-avx512", 512),
        ("ml_c6g", "aarch64", "neoverse-n1", 128),
        ("ml_m6g", "aarch64", "neoverse-n1", 128),
        ("rk3288", "armv7", "cortex-a17", 128),
        ("sitara_am57x", "armv7", "cortex-a15", 128),
        ("qcs605", "aarch64", "cortex-a75", 128),
        ("deeplens", "x86_64", "goldmont", 128),
        ("imx8mplus", "aarch64", "cortex-a53", 128),
    ],
)
def test_known_devices(name, arch, cpu, bits):
    target = get_target(name)
    assert (target.arch, target.cpu, target.vector_bits) == (arch, cpu, bits)


def test_arm_targets_have_neon_and_hard_float():
    for target in all_targets():
        if target.arch == "armv7":
            assert target.triple.endswith("gnueabihf")
            assert "+neon" in target.features
        if target.arch == "aarch64" and target.name != "host":
            assert "+neon" in target.features


def test_host_is_detected():
    host = host_target()
    assert host.name == "host"
    assert host.cpu == llvm.get_host_cpu_name()
    assert host.features == llvm.get_host_cpu_features().flatten()
    if host.arch == "x86_64":
        expected = 512 if "+avx512f" in host.features.split(",") else None
        if expected:
            assert host.vector_bits == 512
        else:
            assert host.vector_bits in (128, 256)


@pytest.mark.parametrize("arch", list(KNOWN_CPUS))
def test_cpu_names_shown_in_messages_are_real(arch):
    for cpu in KNOWN_CPUS[arch]:
        assert llvm_diagnostics(TRIPLES[arch], cpu, BASE_FEATURES[arch]) == [], cpu


def test_llvm_diagnostics_sees_bad_names():
    lines = llvm_diagnostics(TRIPLES["aarch64"], "cortex-a999", "+nosuchfeature")
    assert any("cortex-a999" in line for line in lines)
    assert any("nosuchfeature" in line for line in lines)


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["RASP4B", "Rasp4b", " rasp4b ", "rasp4b"])
def test_target_names_any_case(text):
    assert get_target(text).name == "rasp4b"


def test_aarch64_is_arm64():
    assert get_target("aarch64") == get_target("ARM64")


@pytest.mark.parametrize("name", REFUSED)
def test_refused_devices_say_what_to_use_instead(name):
    err = usage_error(get_target, name)
    assert "not supported" in err.message
    assert "Linux CPU code" in err.message
    assert "ml_c5 / x86_64 / host" in err.message and "jetson_nano" in err.message


def test_gpu_refusal_says_why():
    assert "GPU" in usage_error(get_target, "ml_g4dn").message
    assert "Inferentia" in usage_error(get_target, "ml_inf1").message
    assert "Windows" in usage_error(get_target, "x86_win64").message


def test_unknown_target_suggests_and_lists():
    err = usage_error(get_target, "rasp5b")
    assert "did you mean rasp4b?" in err.message
    assert "ml_c5" in err.message and "jetson_nano" in err.message


# --- resolve_target -----------------------------------------------------------------------------


def test_resolve_plain_target():
    target, options = resolve_target("ml_c5", None, None)
    assert target == get_target("ml_c5")
    assert options == CompilerOptions()


def test_exactly_one_of_target_and_platform():
    assert "not both" in usage_error(resolve_target, "x86_64", "os=LINUX,arch=X86_64").message
    assert "--target" in usage_error(resolve_target, None, None).message


@pytest.mark.parametrize(
    "text, name",
    [
        ("os=LINUX,arch=X86_64", "x86_64"),
        ("os=LINUX,arch=ARM64", "arm64"),
        ("os=linux, arch=arm_eabihf", "armv7"),
        ("OS=Linux,Arch=Arm64", "arm64"),
        ('{"Os":"LINUX","Arch":"ARM64"}', "arm64"),
    ],
)
def test_target_platform(text, name):
    target, _ = resolve_target(None, text)
    base = get_target(name)
    assert (target.name, target.triple, target.cpu, target.features) == (
        base.name,
        base.triple,
        base.cpu,
        base.features,
    )


@pytest.mark.parametrize(
    "text, facts",
    [
        ("os=LINUX,arch=X86", ["32-bit", "arch=X86_64"]),
        ("os=LINUX,arch=ARM_EABI", ["soft-float", "ARM_EABIHF"]),
        ("os=LINUX,arch=ARM64,accelerator=NVIDIA", ["accelerator=NVIDIA", "CPU code"]),
        ("os=LINUX,arch=ARM64,accelerator=MALI", ["not supported", "drop accelerator="]),
        ("os=LINUX,arch=X86_64,accelerator=TPU", ["INTEL_GRAPHICS"]),
        ("os=ANDROID,arch=ARM64", ["ANDROID", "not supported yet", "os=LINUX"]),
        ("os=WINDOWS,arch=X86_64", ["unknown os", "LINUX"]),
        ("os=LINUX,arch=RISCV64", ["unknown arch", "ARM_EABIHF"]),
        ("arch=ARM64", ["needs os="]),
        ("os=LINUX", ["needs arch="]),
        ("os=LINUX,arch", ["key=value"]),
        ("os=LINUX,arch=ARM64,cpu=a72", ["unknown key"]),
        ("{not json", ["not valid JSON"]),
    ],
)
def test_target_platform_refusals(text, facts):
    err = usage_error(parse_target_platform, text)
    for fact in facts:
        assert fact in err.message


# --- compiler options ---------------------------------------------------------------------------


def test_mcpu_replaces_the_cpu_and_its_features():
    target, options = resolve_target("arm64", None, '{"mcpu":"cortex-a72"}')
    assert (target.cpu, target.features, options.mcpu) == ("cortex-a72", "", "cortex-a72")
    assert llvm_diagnostics(target.triple, target.cpu, target.features) == []


def test_mcpu_on_x86_changes_the_vector_width():
    assert resolve_target("x86_64", None, '{"mcpu":"skylake-avx512"}')[0].vector_bits == 512
    assert resolve_target("ml_c5", None, '{"mcpu":"haswell"}')[0].vector_bits == 256
    assert resolve_target("host", None, '{"mcpu":"x86-64"}')[0].vector_bits in (128, 256)


@pytest.mark.parametrize(
    "mattr, features",
    [
        ('["+neon","+vfp4"]', "+neon,+vfp4"),
        ('"+neon,+vfp3,-vfp4"', "+neon,+vfp3,-vfp4"),
        ('["+neon","+vfpv4"]', "+neon,+vfp4"),  # Neo's docs spell it vfpv4
    ],
)
def test_mattr_replaces_the_features(mattr, features):
    target, _ = resolve_target("armv7", None, f'{{"mattr":{mattr}}}')
    assert target.features == features
    assert llvm_diagnostics(target.triple, target.cpu, target.features) == []


def test_mattr_can_enable_avx512():
    target, _ = resolve_target("x86_64", None, '{"mattr":["+avx512f"]}')
    assert target.vector_bits == 512
    target, _ = resolve_target("ml_c5", None, '{"mattr":["-avx512f"]}')
    assert target.vector_bits == 256


def test_dtype_and_android_platform():
    _, options = resolve_target("x86_64", None, '{"dtype":"int64","ANDROID_PLATFORM":25}')
    assert options.dtype == "int64"
    assert any("ANDROID_PLATFORM" in note for note in options.notes)
    per_input = parse_compiler_options('{"dtype":{"input0":"float32","input1":"int64"}}')
    assert per_input.dtype == {"input0": "float32", "input1": "int64"}
    assert parse_compiler_options(None) == CompilerOptions()
    assert parse_compiler_options("") == CompilerOptions()


@pytest.mark.parametrize(
    "target, text, facts",
    [
        ("arm64", '{"mcpu":"cortex-a999"}', ["cortex-a999", "aarch64", "cortex-a72"]),
        ("arm64", '{"mcpu":"cortex-a27"}', ["did you mean"]),
        ("arm64", '{"mcpu":"skylake-avx512"}', ["x86_64 CPU", "arm64 is aarch64"]),
        ("x86_64", '{"mcpu":"cortex-a72"}', ["aarch64 CPU"]),
        ("x86_64", '{"mcpu":"native"}', ["--target host"]),
        ("x86_64", '{"mcpu":3}', ["CPU name"]),
        ("x86_64", '{"mattr":["+avx512"]}', ["+avx512", "not a feature"]),
        ("armv7", '{"mattr":["neon"]}', ["start with + or -"]),
        ("armv7", '{"mattr":5}', ["mattr must be a list"]),
        ("x86_64", '{"dtype":"float8"}', ["float32", "int64"]),
        ("x86_64", '{"dtype":{}}', ["empty"]),
        ("x86_64", '{"gpu-code":"sm_72"}', ["NVIDIA GPU option"]),
        ("x86_64", '{"opt_level":3}', ["unknown option", "mcpu, mattr, dtype, ANDROID_PLATFORM"]),
        ("x86_64", '["mcpu"]', ["JSON object"]),
        ("x86_64", "{mcpu: x}", ["not valid JSON"]),
    ],
)
def test_compiler_option_errors(target, text, facts):
    err = usage_error(resolve_target, target, None, text)
    for fact in facts:
        assert fact in err.message
