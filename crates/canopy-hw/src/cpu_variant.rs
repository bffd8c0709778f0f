//! Which of llama.cpp's x86-64 CPU backends this process may run.
//!
//! llama.cpp builds its CPU backend once per instruction-set level (`libggml-cpu-haswell.so`,
//! `-skylakex`, `-zen4`, `-sapphirerapids`, …) and, left to itself, loads the one whose features
//! CPUID advertises. CPUID says what the processor has, not what this process may execute: the
//! operating system must also have enabled the register state (XCR0: the YMM registers for AVX, the
//! opmask and ZMM registers for AVX-512, the tile registers for AMX), and Linux lets a process use
//! AMX only after it asked (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`). A variant that
//! uses state the process was not given dies with SIGILL on its first such instruction.
//!
//! So Canopy chooses: [`Features::probe`] reads CPUID and XCR0 and asks for AMX, and [`choose`]
//! picks the best variant whose every requirement holds, naming each better one it skipped and why.
//! The choice is pure and tested with synthetic feature sets; only [`Features::probe`] touches the
//! processor. The worker loads what [`choose`] picks (canopy-llama's `backends`), and
//! [`expected`] gives the same answer in any process, for the machine facts a profile records.

use std::fmt;

/// One instruction-set extension a CPU variant is compiled for (the names of llama.cpp's
/// `ggml_add_cpu_backend_variant` lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    Sse42,
    Avx,
    F16c,
    Fma,
    Avx2,
    Bmi2,
    AvxVnni,
    /// AVX-512 F, CD, VL, DQ and BW together, as llama.cpp's `AVX512` level requires.
    Avx512,
    Avx512Vbmi,
    Avx512Vnni,
    Avx512Bf16,
    AmxTile,
    AmxInt8,
}

impl Feature {
    /// llama.cpp's name for it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Feature::Sse42 => "SSE4.2",
            Feature::Avx => "AVX",
            Feature::F16c => "F16C",
            Feature::Fma => "FMA",
            Feature::Avx2 => "AVX2",
            Feature::Bmi2 => "BMI2",
            Feature::AvxVnni => "AVX-VNNI",
            Feature::Avx512 => "AVX-512",
            Feature::Avx512Vbmi => "AVX-512 VBMI",
            Feature::Avx512Vnni => "AVX-512 VNNI",
            Feature::Avx512Bf16 => "AVX-512 BF16",
            Feature::AmxTile => "AMX-TILE",
            Feature::AmxInt8 => "AMX-INT8",
        }
    }

    /// The weight llama.cpp's own score gives this feature (`ggml_backend_cpu_x86_score`), so that
    /// among the variants this process may run Canopy picks the one llama.cpp would have picked.
    fn score(self) -> u32 {
        match self {
            Feature::Fma => 1,
            Feature::F16c => 1 << 1,
            Feature::Sse42 => 1 << 2,
            Feature::Bmi2 => 1 << 3,
            Feature::Avx => 1 << 4,
            Feature::Avx2 => 1 << 5,
            Feature::AvxVnni => 1 << 6,
            Feature::Avx512 => 1 << 7,
            Feature::Avx512Vbmi => 1 << 8,
            Feature::Avx512Bf16 => 1 << 9,
            Feature::Avx512Vnni => 1 << 10,
            Feature::AmxInt8 => 1 << 11,
            Feature::AmxTile => 0,
        }
    }
}

/// The x86-64 variants llama.cpp 0.1.161 builds with `GGML_CPU_ALL_VARIANTS`, and what each needs.
pub const VARIANTS: &[(&str, &[Feature])] = {
    use Feature::*;
    &[
        ("x64", &[]),
        ("sse42", &[Sse42]),
        ("sandybridge", &[Sse42, Avx]),
        ("ivybridge", &[Sse42, Avx, F16c]),
        ("piledriver", &[Sse42, Avx, F16c, Fma]),
        ("haswell", &[Sse42, Avx, F16c, Fma, Avx2, Bmi2]),
        ("skylakex", &[Sse42, Avx, F16c, Fma, Avx2, Bmi2, Avx512]),
        (
            "cannonlake",
            &[Sse42, Avx, F16c, Fma, Avx2, Bmi2, Avx512, Avx512Vbmi],
        ),
        (
            "cascadelake",
            &[Sse42, Avx, F16c, Fma, Avx2, Bmi2, Avx512, Avx512Vnni],
        ),
        (
            "icelake",
            &[
                Sse42, Avx, F16c, Fma, Avx2, Bmi2, Avx512, Avx512Vbmi, Avx512Vnni,
            ],
        ),
        (
            "cooperlake",
            &[
                Sse42, Avx, F16c, Fma, Avx2, Bmi2, Avx512, Avx512Vnni, Avx512Bf16,
            ],
        ),
        (
            "zen4",
            &[
                Sse42, Avx, F16c, Fma, Avx2, Bmi2, Avx512, Avx512Vbmi, Avx512Vnni, Avx512Bf16,
            ],
        ),
        ("alderlake", &[Sse42, Avx, F16c, Fma, Avx2, Bmi2, AvxVnni]),
        (
            "sapphirerapids",
            &[
                Sse42, Avx, F16c, Fma, Avx2, Bmi2, Avx512, Avx512Vbmi, Avx512Vnni, Avx512Bf16,
                AmxTile, AmxInt8,
            ],
        ),
    ]
};

/// Whether this process may execute a feature's instructions, and if not, why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    Usable,
    /// CPUID does not advertise it.
    NotInCpu,
    /// CPUID advertises it, but the operating system has not enabled its register state (XCR0).
    NotEnabledByOs,
    /// The processor and OS support it, but this process's request to use it was refused.
    PermissionRefused(String),
}

/// What this process may execute, feature by feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    support: Vec<(Feature, Support)>,
}

impl Features {
    /// Every feature with the same support: `Usable` gives a machine that runs every variant.
    #[must_use]
    pub fn all(support: Support) -> Features {
        let all = VARIANTS
            .last()
            .map_or(&[][..], |(_, f)| *f)
            .iter()
            .chain(&[Feature::AvxVnni])
            .map(|&f| (f, support.clone()))
            .collect();
        Features { support: all }
    }

    /// `self` with `feature`'s support replaced.
    #[must_use]
    pub fn with(mut self, feature: Feature, support: Support) -> Features {
        self.support.retain(|(f, _)| *f != feature);
        self.support.push((feature, support));
        self
    }

    /// What this process may use of `feature`; a feature never probed is `NotInCpu`.
    #[must_use]
    pub fn support(&self, feature: Feature) -> Support {
        self.support
            .iter()
            .find(|(f, _)| *f == feature)
            .map_or(Support::NotInCpu, |(_, s)| s.clone())
    }

    /// Reads CPUID and XCR0 and, on Linux when the processor and OS have AMX, asks for permission
    /// to use it (once per process; asking again is harmless). Must run before any CPU variant is
    /// loaded.
    #[cfg(target_arch = "x86_64")]
    #[must_use]
    pub fn probe() -> Features {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        let max_leaf = __cpuid(0).eax;
        let l1 = __cpuid(1);
        let (l7, l7_1) = if max_leaf >= 7 {
            // Sub-leaf 1 reads zeros where it does not exist.
            (__cpuid_count(7, 0), __cpuid_count(7, 1))
        } else {
            let none = std::arch::x86_64::CpuidResult {
                eax: 0,
                ebx: 0,
                ecx: 0,
                edx: 0,
            };
            (none, none)
        };
        let bit = |reg: u32, n: u32| reg >> n & 1 == 1;
        let osxsave = bit(l1.ecx, 27);
        let xcr0 = if osxsave {
            // SAFETY: XGETBV is available when CPUID.1:ECX.OSXSAVE is set (checked above).
            unsafe { std::arch::x86_64::_xgetbv(0) }
        } else {
            0
        };
        let cpu = CpuidBits {
            sse42: bit(l1.ecx, 20),
            avx: bit(l1.ecx, 28),
            f16c: bit(l1.ecx, 29),
            fma: bit(l1.ecx, 12),
            avx2: bit(l7.ebx, 5),
            bmi2: bit(l7.ebx, 8),
            avx_vnni: bit(l7_1.eax, 4),
            avx512: [16, 28, 31, 17, 30].iter().all(|&n| bit(l7.ebx, n)),
            avx512_vbmi: bit(l7.ecx, 1),
            avx512_vnni: bit(l7.ecx, 11),
            avx512_bf16: bit(l7_1.eax, 5),
            amx_tile: bit(l7.edx, 24),
            amx_int8: bit(l7.edx, 25),
        };
        Features::from_bits(&cpu, xcr0, request_amx)
    }

    /// Off x86-64 nothing here applies: llama.cpp chooses its own variant.
    #[cfg(not(target_arch = "x86_64"))]
    #[must_use]
    pub fn probe() -> Features {
        Features::all(Support::NotInCpu)
    }

    /// Combines CPUID's answer with XCR0's enabled state and the AMX permission request (asked
    /// only when the processor and OS have AMX).
    fn from_bits(
        cpu: &CpuidBits,
        xcr0: u64,
        request_amx: impl FnOnce() -> Result<(), String>,
    ) -> Features {
        // XCR0: 1 SSE, 2 AVX (YMM upper halves), 5-7 AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM),
        // 17-18 AMX (tile config, tile data).
        let ymm = xcr0 & 0b110 == 0b110;
        let zmm = ymm && xcr0 & 0xe0 == 0xe0;
        let tiles = xcr0 & (0b11 << 17) == 0b11 << 17;
        let state = |has: bool, enabled: bool| match (has, enabled) {
            (false, _) => Support::NotInCpu,
            (true, false) => Support::NotEnabledByOs,
            (true, true) => Support::Usable,
        };
        let mut support = vec![
            (Feature::Sse42, state(cpu.sse42, true)),
            (Feature::Avx, state(cpu.avx, ymm)),
            // F16C and FMA work on YMM registers in every variant that uses them.
            (Feature::F16c, state(cpu.f16c, ymm)),
            (Feature::Fma, state(cpu.fma, ymm)),
            (Feature::Avx2, state(cpu.avx2, ymm)),
            (Feature::Bmi2, state(cpu.bmi2, true)),
            (Feature::AvxVnni, state(cpu.avx_vnni, ymm)),
            (Feature::Avx512, state(cpu.avx512, zmm)),
            (Feature::Avx512Vbmi, state(cpu.avx512_vbmi, zmm)),
            (Feature::Avx512Vnni, state(cpu.avx512_vnni, zmm)),
            (Feature::Avx512Bf16, state(cpu.avx512_bf16, zmm)),
        ];
        let amx = match state(cpu.amx_tile && cpu.amx_int8, tiles) {
            Support::Usable => match request_amx() {
                Ok(()) => Support::Usable,
                Err(why) => Support::PermissionRefused(why),
            },
            other => other,
        };
        let amx_int8 = match (&amx, cpu.amx_int8) {
            (_, false) => Support::NotInCpu,
            (s, true) => s.clone(),
        };
        let amx_tile = match (&amx, cpu.amx_tile) {
            (_, false) => Support::NotInCpu,
            (s, true) => s.clone(),
        };
        support.push((Feature::AmxTile, amx_tile));
        support.push((Feature::AmxInt8, amx_int8));
        Features { support }
    }
}

/// What CPUID advertises, before the OS and permission checks.
#[derive(Debug, Clone, Copy, Default)]
struct CpuidBits {
    sse42: bool,
    avx: bool,
    f16c: bool,
    fma: bool,
    avx2: bool,
    bmi2: bool,
    avx_vnni: bool,
    avx512: bool,
    avx512_vbmi: bool,
    avx512_vnni: bool,
    avx512_bf16: bool,
    amx_tile: bool,
    amx_int8: bool,
}

/// Asks Linux to let this process use the AMX tile data registers.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_amx() -> Result<(), String> {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM takes two integers and changes only this
    // process's permitted register state.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "arch_prctl(ARCH_REQ_XCOMP_PERM) failed: {}",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_amx() -> Result<(), String> {
    Err("AMX is used only on Linux".into())
}

/// The variant a worker of this process's binary loads on this machine, where all of llama.cpp's
/// x86-64 variants are installed (every Canopy build installs them): `CANOPY_CPU_VARIANT` when set
/// and runnable, else the best runnable one. `None` off x86-64 (llama.cpp chooses there) or when
/// the forced variant cannot run.
pub fn expected() -> Option<String> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let installed: Vec<String> = VARIANTS.iter().map(|(n, _)| (*n).to_owned()).collect();
    let forced = std::env::var("CANOPY_CPU_VARIANT")
        .ok()
        .filter(|v| !v.is_empty());
    choose(&installed, &Features::probe(), forced.as_deref())
        .ok()
        .and_then(|c| c.variant)
}

/// A variant not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub variant: String,
    pub why: String,
}

/// The outcome of [`choose`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantChoice {
    /// The variant to load; `None` when no installed variant can run here.
    pub variant: Option<String>,
    /// Installed variants better than the chosen one (by llama.cpp's score) that this process may
    /// not run, best first.
    pub skipped: Vec<Skipped>,
    /// Whether `CANOPY_CPU_VARIANT` named it.
    pub forced: bool,
}

/// Why `features` cannot run `variant`, or `None` when it can. Unknown variants cannot run.
#[must_use]
pub fn why_not(variant: &str, features: &Features) -> Option<String> {
    let Some((_, needs)) = VARIANTS.iter().find(|(name, _)| *name == variant) else {
        return Some("a variant this version of Canopy does not know".into());
    };
    let reasons: Vec<String> = needs
        .iter()
        .filter_map(|&f| match features.support(f) {
            Support::Usable => None,
            Support::NotInCpu => Some(format!("no {} in this processor", f.name())),
            Support::NotEnabledByOs => Some(format!(
                "{} not enabled by the operating system (XCR0)",
                f.name()
            )),
            Support::PermissionRefused(why) => Some(format!("{} refused: {why}", f.name())),
        })
        .collect();
    // AMX-TILE and AMX-INT8 share one permission: say it once.
    let mut reasons = reasons;
    reasons.dedup_by(|a, b| a.starts_with("AMX") && b.starts_with("AMX"));
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

fn score(variant: &str) -> u32 {
    VARIANTS
        .iter()
        .find(|(name, _)| *name == variant)
        .map_or(0, |(_, needs)| {
            1 + needs.iter().map(|f| f.score()).sum::<u32>()
        })
}

/// Chooses among `installed` variant names: `forced` when given (an error when this process cannot
/// run it or it is not installed), else the best one by llama.cpp's score whose requirements all
/// hold.
///
/// # Errors
/// One line for users when the forced variant is not installed or cannot run here.
pub fn choose(
    installed: &[String],
    features: &Features,
    forced: Option<&str>,
) -> Result<VariantChoice, String> {
    if let Some(name) = forced {
        if !installed.iter().any(|v| v == name) {
            let mut known = installed.to_vec();
            known.sort_by_key(|v| std::cmp::Reverse(score(v)));
            return Err(format!(
                "CANOPY_CPU_VARIANT={name}: no such CPU backend is installed (there are: {})",
                known.join(", ")
            ));
        }
        if let Some(why) = why_not(name, features) {
            return Err(format!(
                "CANOPY_CPU_VARIANT={name}: this machine cannot run it ({why}); unset it to let \
                 Canopy choose"
            ));
        }
        return Ok(VariantChoice {
            variant: Some(name.to_owned()),
            skipped: Vec::new(),
            forced: true,
        });
    }
    let mut ranked: Vec<&String> = installed.iter().collect();
    ranked.sort_by_key(|v| (std::cmp::Reverse(score(v)), v.as_str()));
    let mut skipped = Vec::new();
    for variant in ranked {
        match why_not(variant, features) {
            None => {
                return Ok(VariantChoice {
                    variant: Some(variant.clone()),
                    skipped,
                    forced: false,
                })
            }
            // Variants the processor plainly lacks are not worth a line; those it has but this
            // process may not use are.
            Some(why) => skipped.push(Skipped {
                variant: variant.clone(),
                why,
            }),
        }
    }
    Ok(VariantChoice {
        variant: None,
        skipped,
        forced: false,
    })
}

impl VariantChoice {
    /// The skipped variants worth telling a user about: those the processor has but this process
    /// may not use (not merely missing instructions).
    #[must_use]
    pub fn notable_skips(&self) -> Vec<&Skipped> {
        self.skipped
            .iter()
            .filter(|s| !s.why.split(", ").all(|r| r.starts_with("no ")))
            .collect()
    }
}

impl fmt::Display for VariantChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.variant {
            Some(v) if self.forced => write!(f, "{v}, forced by CANOPY_CPU_VARIANT")?,
            Some(v) => write!(f, "{v}")?,
            None => write!(f, "none")?,
        }
        for s in self.notable_skips() {
            write!(f, "; skipped {}: {}", s.variant, s.why)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed() -> Vec<String> {
        VARIANTS.iter().map(|(n, _)| (*n).to_owned()).collect()
    }

    fn sapphire_rapids_bits() -> CpuidBits {
        CpuidBits {
            sse42: true,
            avx: true,
            f16c: true,
            fma: true,
            avx2: true,
            bmi2: true,
            avx_vnni: true,
            avx512: true,
            avx512_vbmi: true,
            avx512_vnni: true,
            avx512_bf16: true,
            amx_tile: true,
            amx_int8: true,
        }
    }

    const XCR0_ALL: u64 = 0x600e7;

    #[test]
    fn amx_with_permission_runs_the_amx_variant() {
        let f = Features::from_bits(&sapphire_rapids_bits(), XCR0_ALL, || Ok(()));
        let c = choose(&installed(), &f, None).unwrap();
        assert_eq!(c.variant.as_deref(), Some("sapphirerapids"));
        assert!(c.skipped.is_empty());
    }

    #[test]
    fn amx_advertised_but_permission_refused_is_never_loaded() {
        let f = Features::from_bits(&sapphire_rapids_bits(), XCR0_ALL, || {
            Err("arch_prctl(ARCH_REQ_XCOMP_PERM) failed: Operation not permitted".into())
        });
        let c = choose(&installed(), &f, None).unwrap();
        assert_eq!(c.variant.as_deref(), Some("zen4"));
        assert_eq!(c.skipped.len(), 1);
        assert_eq!(c.skipped[0].variant, "sapphirerapids");
        assert!(c.skipped[0].why.contains("refused"), "{:?}", c.skipped);
        assert!(c.to_string().contains("skipped sapphirerapids"), "{c}");
        // The permission is one request: one reason, not one per AMX feature.
        assert_eq!(
            c.skipped[0].why.matches("AMX").count(),
            1,
            "{:?}",
            c.skipped
        );
    }

    #[test]
    fn amx_tile_state_off_in_xcr0_is_not_asked_for() {
        let mut asked = false;
        let f = Features::from_bits(&sapphire_rapids_bits(), 0xe7, || {
            asked = true;
            Ok(())
        });
        assert!(!asked);
        let c = choose(&installed(), &f, None).unwrap();
        assert_eq!(c.variant.as_deref(), Some("zen4"));
        assert!(c.skipped[0].why.contains("XCR0"), "{:?}", c.skipped);
    }

    #[test]
    fn avx512_in_cpuid_but_zmm_state_off_gives_no_avx512_variant() {
        let f = Features::from_bits(&sapphire_rapids_bits(), 0x7, || Ok(()));
        let c = choose(&installed(), &f, None).unwrap();
        assert_eq!(c.variant.as_deref(), Some("alderlake"));
        assert!(c.skipped.iter().all(|s| s.variant != "alderlake"));
        assert!(c
            .skipped
            .iter()
            .any(|s| s.variant == "zen4" && s.why.contains("AVX-512 not enabled")));
    }

    #[test]
    fn a_plain_x86_64_gets_the_baseline() {
        let f = Features::from_bits(&CpuidBits::default(), 0x3, || Ok(()));
        let c = choose(&installed(), &f, None).unwrap();
        assert_eq!(c.variant.as_deref(), Some("x64"));
        // Missing instructions are not news: nothing notable was skipped.
        assert!(c.notable_skips().is_empty());
    }

    #[test]
    fn an_avx2_machine_gets_haswell() {
        let bits = CpuidBits {
            avx512: false,
            avx512_vbmi: false,
            avx512_vnni: false,
            avx512_bf16: false,
            amx_tile: false,
            amx_int8: false,
            avx_vnni: false,
            ..sapphire_rapids_bits()
        };
        let f = Features::from_bits(&bits, 0x7, || panic!("no AMX to ask for"));
        let c = choose(&installed(), &f, None).unwrap();
        assert_eq!(c.variant.as_deref(), Some("haswell"));
    }

    #[test]
    fn only_installed_variants_are_chosen() {
        let f = Features::all(Support::Usable);
        let some = vec!["haswell".to_owned(), "x64".to_owned()];
        assert_eq!(
            choose(&some, &f, None).unwrap().variant.as_deref(),
            Some("haswell")
        );
        assert_eq!(choose(&[], &f, None).unwrap().variant, None);
        let unknown = vec!["futurelake".to_owned()];
        let c = choose(&unknown, &f, None).unwrap();
        assert_eq!(c.variant, None);
        assert!(c.skipped[0].why.contains("does not know"));
    }

    #[test]
    fn a_forced_variant_is_checked() {
        let f = Features::from_bits(&sapphire_rapids_bits(), XCR0_ALL, || Err("refused".into()));
        let c = choose(&installed(), &f, Some("haswell")).unwrap();
        assert_eq!(c.variant.as_deref(), Some("haswell"));
        assert!(c.forced);
        assert!(c.to_string().contains("forced"));
        let e = choose(&installed(), &f, Some("sapphirerapids")).unwrap_err();
        assert!(e.contains("cannot run it") && e.contains("AMX"), "{e}");
        let e = choose(&installed(), &f, Some("nosuch")).unwrap_err();
        assert!(e.contains("no such CPU backend"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn the_scores_order_the_variants_as_llama_cpp_does() {
        assert!(score("sapphirerapids") > score("zen4"));
        assert!(score("zen4") > score("icelake"));
        assert!(score("icelake") > score("skylakex"));
        assert!(score("skylakex") > score("alderlake"));
        assert!(score("alderlake") > score("haswell"));
        assert!(score("haswell") > score("x64"));
    }

    #[test]
    fn this_machine_probes_to_a_runnable_variant() {
        let f = Features::probe();
        let c = choose(&installed(), &f, None).unwrap();
        if cfg!(target_arch = "x86_64") {
            let v = c.variant.expect("every x86-64 runs x64");
            assert!(why_not(&v, &f).is_none());
        }
    }
}
