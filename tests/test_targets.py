"""Targets: every one must be a CPU/feature set the bundled LLVM accepts without warnings."""

from __future__ import annotations

import re

import llvmlite.binding as llvm
import pytest

from neo.errors import UsageError
from neo.ir.target import ARCHES, OSES, arch_of_machine, make_target, riscv_isa
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
        ("riscv64", "riscv64", "generic-rv64", 32),
        ("rv64gc", "riscv64", "generic-rv64", 32),
        ("rv64gcv", "riscv64", "generic-rv64", 128),
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
        ("os=LINUX,arch=RISCV64", "riscv64"),
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
        ("os=ANDROID,arch=ARM64", ["ANDROID", "not supported yet", "os=LINUX", "RISCV64"]),
        ("os=WINDOWS,arch=X86_64", ["unknown os", "LINUX"]),
        ("os=LINUX,arch=MIPS64", ["unknown arch", "ARM_EABIHF", "RISCV64"]),
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


# --- targets as data (neo.ir.target) ------------------------------------------------------------


def test_every_arch_row_is_consistent_with_llvm_and_zig():
    from neo.codegen.toolchain import ZIG_TARGETS

    for name, facts in ARCHES.items():
        target = make_target(name, name)
        assert target.triple == TRIPLES[name] == facts.triple()
        # the triple's pointer size is the row's: LLVM's data layout says it (64 when unstated)
        layout = str(target.create_target_machine().target_data)
        found = re.search(r"(?:^|-)p:(\d+)", layout)
        assert (int(found.group(1)) if found else 64) == facts.pointer_bits, (name, layout)
        assert layout.startswith("e") == (facts.endian == "little"), (name, layout)
        assert llvm_diagnostics(target.triple, facts.default_cpu, facts.base_features) == []
        assert ZIG_TARGETS[name] == f"{facts.zig_arch}-linux-{facts.linux_abi}.{facts.glibc}"
        assert facts.qemu.startswith("qemu-") and facts.sysroot.startswith("/usr/")
        assert arch_of_machine(facts.machine_names[0]) == name
        assert facts.check(facts.default_cpu, facts.base_features) is None


def test_target_fields_and_naming():
    t = get_target("rasp4b")
    assert (t.os, t.abi, t.object_format, t.pointer_bits, t.endian) == (
        "linux", "gnu", "elf", 64, "little")
    assert (t.model_library, t.runtime_library, t.runner) == (
        "compiled.so", "libneort.so", "neo-run")
    assert get_target("armv7").abi == "gnueabihf" and get_target("armv7").pointer_bits == 32
    assert OSES["windows"].shared_library("neort") == "neort.dll"
    assert OSES["windows"].executable("neo-run") == "neo-run.exe"
    assert t.meta() == {"name": "rasp4b", "arch": "aarch64", "triple": "aarch64-unknown-linux-gnu",
                        "cpu": "cortex-a72", "features": "+neon,+fp-armv8", "os": "linux",
                        "abi": "gnu", "object_format": "elf", "vector_bits": 128}
    assert (get_target("riscv64").lanes(), get_target("rv64gcv").lanes(),
            get_target("ml_c5").lanes(16)) == (1, 4, 32)


def test_riscv_vector_width_follows_the_guaranteed_vlen():
    # V implies Zvl128b; Zvl<N>b raises the minimum; without float vectors codegen is scalar
    base = BASE_FEATURES["riscv64"]
    assert make_target("t", "riscv64", features=base).vector_bits == 32
    assert make_target("t", "riscv64", features=base + ",+v").vector_bits == 128
    assert make_target("t", "riscv64", features=base + ",+v,+zvl256b").vector_bits == 256
    assert make_target("t", "riscv64", "spacemit-x60", features="").vector_bits == 256
    assert make_target("t", "riscv64", "sifive-x280", features="").vector_bits == 512
    assert make_target("t", "riscv64", "sifive-u74", features="").vector_bits == 32
    assert {"i", "m", "a", "f", "d", "c", "v", "zvl128b"} <= riscv_isa(
        TRIPLES["riscv64"], "generic-rv64", base + ",+v")


def test_riscv_compiler_options():
    target, _ = resolve_target("riscv64", None, '{"mcpu":"spacemit-x60"}')
    assert (target.cpu, target.features, target.vector_bits) == ("spacemit-x60", "", 256)
    target, _ = resolve_target("rv64gcv", None, '{"mcpu":"generic-rv64"}')
    assert target.features == BASE_FEATURES["riscv64"] and target.vector_bits == 32
    target, _ = resolve_target("riscv64", None, '{"mattr":["+m","+a","+f","+d","+c","+v"]}')
    assert target.vector_bits == 128
    err = usage_error(resolve_target, "riscv64", None, '{"mattr":["+m","+a","+f","+c"]}')
    assert "lp64d" in err.message and "+d" in err.message
    assert "riscv64 CPU" in usage_error(resolve_target, "arm64", None,
                                        '{"mcpu":"sifive-u74"}').message


def test_qemu_cpu_matches_the_code():
    # vectors on, at the VLEN the code assumes, only for code that may use them
    rv = ARCHES["riscv64"]
    scalar, vector = get_target("riscv64"), get_target("rv64gcv")
    assert rv.qemu_command(scalar.cpu, scalar.features)[1:3] == ["-cpu", "rv64,v=false"]
    assert "v=true,vlen=128" in rv.qemu_command(vector.cpu, vector.features)[2]
    assert "vlen=256" in rv.qemu_command("spacemit-x60", "")[2]
    assert ARCHES["aarch64"].qemu_command() == ["qemu-aarch64-static", "-L",
                                                "/usr/aarch64-linux-gnu"]


@pytest.mark.parametrize("name", ["x86_win32", "x86_win64"])
def test_windows_is_refused_saying_what_is_supported(name):
    message = usage_error(get_target, name).message
    assert "Windows" in message and "not supported yet" in message
    assert "Linux on x86_64, aarch64, armv7, riscv64" in message
    assert not OSES["windows"].supported and not OSES["android"].supported


def test_host_arch_from_machine_names():
    assert arch_of_machine("AMD64") == "x86_64"
    assert arch_of_machine("arm64") == "aarch64"
    assert arch_of_machine("armv7l") == "armv7"
    assert arch_of_machine("riscv64") == "riscv64"
    assert arch_of_machine("mips64") is None
