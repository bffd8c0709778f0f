//! Profile documents: reference profiles, schema round trip, refusal of newer schemas, and a profile
//! measured for real on this machine.

use std::path::Path;

use canopy_hw::*;

#[test]
fn reference_profiles_load_and_cite_their_sources() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut built_in: Vec<String> = REFERENCE_PROFILES
        .iter()
        .map(|(n, _)| format!("{n}.json"))
        .collect();
    built_in.sort();
    assert_eq!(
        names, built_in,
        "every file in profiles/ is built in, and only those"
    );

    for (name, _) in REFERENCE_PROFILES {
        let from_file = load_profile(&dir.join(format!("{name}.json"))).unwrap();
        let built = reference_profile(name).unwrap().unwrap();
        assert_eq!(from_file, built);
        assert_eq!(built.name, *name);
        assert_eq!(built.kind, ProfileKind::Reference);
        assert!(
            built.source.contains("not measurements of this machine"),
            "{name}"
        );
        assert!(built.costs().is_none());
        built.cost_model.validate().unwrap();
        let has_gpu = built.cost_model.gpu.is_some();
        assert_eq!(has_gpu, built.gpu.info().is_some(), "{name}");
    }
    assert!(reference_profile("rtx9999").is_none());
}

#[test]
fn reference_pcie_anchors() {
    let h2d = |name| {
        reference_profile(name)
            .unwrap()
            .unwrap()
            .cost_model
            .gpu
            .unwrap()
            .h2d_gb_per_s
    };
    assert_eq!(h2d("rtx2080ti-pcie3"), 13.0);
    assert_eq!(h2d("rtx3090-pcie4"), 24.0);
    assert_eq!(h2d("rtx4090-pcie4"), 24.0);
    assert_eq!(h2d("rtx5090-pcie5"), 56.0);
    let p = reference_profile("rtx4090-pcie4").unwrap().unwrap();
    let facts = &p.gpu.info().unwrap().facts;
    assert_eq!(facts.vram_total_bytes, 24 << 30);
    assert_eq!(facts.theoretical_memory_gb_per_s, Some(1008.0));
}

fn sample_profile() -> Profile {
    let mut p = reference_profile("rtx3090-pcie4").unwrap().unwrap();
    p.kind = ProfileKind::Measured;
    p.name = "round-trip".into();
    p.created_at = canopy_hw::profile::now_rfc3339();
    p.machine = Some(system_facts());
    let curve = |pts: &[(usize, f64)]| CostCurve {
        points: pts
            .iter()
            .map(|&(n, s)| CurvePoint {
                n,
                seconds: Spread::from_samples(&[s * 0.99, s, s * 1.02]).unwrap(),
            })
            .collect(),
    };
    p.curves = Some(ProfileCurves {
        target: ModelCurve {
            model: ModelRef {
                name: "qwen2.5-coder-1.5b-instruct-q4_k_m".into(),
                bytes: 1_117_320_736,
                params: Some(1_543_714_304),
                layers: Some(28),
                path: Some("/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf".into()),
            },
            placement: LayerSplit {
                resident_layers: 0,
                op_offload_min_batch: 32,
            },
            curve: curve(&[(1, 0.109), (4, 0.241), (16, 0.636), (32, 1.17)]),
            rpc: None,
            offload_paths: None,
        },
        draft: Some(ModelCurve {
            model: ModelRef {
                name: "qwen2.5-coder-0.5b-instruct-q4_k_m".into(),
                bytes: 491_400_032,
                params: None,
                layers: None,
                path: None,
            },
            placement: LayerSplit {
                resident_layers: 24,
                op_offload_min_batch: 32,
            },
            curve: curve(&[(1, 0.046), (4, 0.102), (16, 0.342)]),
            rpc: None,
            offload_paths: None,
        }),
        warmup: 1,
        repeats: 3,
    });
    p.acceptance = Some(AcceptanceRecord {
        draft: "qwen2.5-coder-0.5b".into(),
        target: "qwen2.5-coder-1.5b".into(),
        temperature: 0.0,
        p: vec![0.7, 0.1, 0.05],
    });
    p.op_offload_min_batch = Some(32);
    p.resident_layers = Some(0);
    p
}

#[test]
fn schema_round_trip() {
    let p = sample_profile();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/round-trip.json");
    p.save(&path).unwrap();
    let back = load_profile(&path).unwrap();
    assert_eq!(back, p);
    let (target, draft) = back.costs().unwrap();
    assert_eq!(
        target,
        vec![(1, 0.109), (4, 0.241), (16, 0.636), (32, 1.17)]
    );
    assert_eq!(draft.len(), 3);
    // The JSON carries the version and the documented top-level fields.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    for key in [
        "machine",
        "gpu",
        "cost_model",
        "curves",
        "acceptance",
        "op_offload_min_batch",
        "resident_layers",
        "created_at",
        "source",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["gpu"]["status"], "found");
}

#[test]
fn newer_schema_is_refused_with_a_clear_error() {
    let mut v: serde_json::Value = serde_json::from_str(&sample_profile().to_json()).unwrap();
    v["schema_version"] = 2.into();
    v["something_new"] = "from the future".into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let err = load_profile(&path).unwrap_err();
    assert!(
        matches!(
            err,
            HwError::NewerSchema {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("newer Canopy") && msg.contains("future.json"),
        "{msg}"
    );

    v.as_object_mut().unwrap().remove("schema_version");
    std::fs::write(&path, v.to_string()).unwrap();
    assert!(matches!(
        load_profile(&path),
        Err(HwError::MissingSchemaVersion { .. })
    ));

    std::fs::write(&path, "{\"schema_version\": 1, \"name\": 3}").unwrap();
    assert!(matches!(load_profile(&path), Err(HwError::Parse { .. })));
    assert!(matches!(
        load_profile(&dir.path().join("absent.json")),
        Err(HwError::Io { .. })
    ));
}

#[test]
fn invalid_cost_model_is_refused() {
    let mut v: serde_json::Value = serde_json::from_str(&sample_profile().to_json()).unwrap();
    v["cost_model"]["gpu"]["h2d_gb_per_s"] = 0.0.into();
    let err = Profile::from_json(&v.to_string(), Path::new("x.json")).unwrap_err();
    assert!(err.to_string().contains("h2d_gb_per_s"), "{err}");
}

#[test]
fn find_profile_by_path_saved_name_and_reference_name() {
    let p = sample_profile();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.json");
    p.save(&file).unwrap();
    assert_eq!(find_profile(file.to_str().unwrap(), dir.path()).unwrap(), p);
    assert_eq!(find_profile("x", dir.path()).unwrap(), p);
    assert_eq!(
        find_profile("cpu-only", dir.path()).unwrap().name,
        "cpu-only"
    );
    let err = find_profile("no-such-profile-anywhere", dir.path()).unwrap_err();
    assert!(err.to_string().contains("rtx4090-pcie4"), "{err}");
}

/// Measures this machine for real: system facts, host memory bandwidth, the GPU probe, and a cost
/// model built from them, checked against generous sanity ranges.
#[test]
fn measured_cpu_profile_of_this_machine() {
    let facts = system_facts();
    assert!(facts.logical_cores >= 1);
    assert!(facts
        .physical_cores
        .is_none_or(|p| p >= 1 && p <= facts.logical_cores));
    assert!(
        facts.ram_total_bytes >= 256 << 20,
        "{}",
        facts.ram_total_bytes
    );
    assert!(facts.ram_available_bytes <= facts.ram_total_bytes);
    assert!(!facts.os_name.is_empty());

    let opts = HostBandwidthOptions::quick(facts.physical_cores.unwrap_or(1));
    let mut calls = 0;
    let host = measure_host_bandwidth(&opts, &mut |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .unwrap();
    assert_eq!(calls, opts.repeats + 1);
    let bw = host.copy_gb_per_s.median;
    // Any machine that can run Canopy copies memory faster than 0.5 GB/s and slower than 2 TB/s.
    assert!((0.5..2000.0).contains(&bw), "host bandwidth {bw} GB/s");
    assert!(host.copy_gb_per_s.min <= bw && bw <= host.copy_gb_per_s.max);

    let gpu = probe_gpu(&GpuProbeOptions::quick(), &mut |_, _| {}).unwrap();
    let model = CostModel::from_measurements(&facts, Some(&host), &gpu);
    model.validate().unwrap();
    assert_eq!(model.host_memory_gb_per_s, bw);

    // A 1.1 GB target read at the measured bandwidth: the predicted pass is at least the read time.
    let target = ModelSpec::from_bits_per_weight(1_117_320_736, 5.8, 28).unwrap();
    let placement = LayerSplit {
        resident_layers: 0,
        op_offload_min_batch: 32,
    };
    if model.gpu.is_none() {
        let t1 = model.target_pass(&target, &placement, 1).total_s;
        assert!(t1 >= 1.117 / bw, "{t1}");
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_cuda_feature_the_probe_says_so() {
    let gpu = probe_gpu(&GpuProbeOptions::quick(), &mut |_, _| {}).unwrap();
    assert_eq!(gpu, GpuStatus::NotBuilt);
    assert_eq!(gpu.summary(), "this build has no CUDA support");
}

/// With the `cuda` feature on a machine without an NVIDIA driver, the probe answers "no CUDA GPU
/// found" instead of failing or panicking. On a machine with a GPU it finds one and measures it.
#[cfg(feature = "cuda")]
#[test]
fn with_cuda_feature_the_probe_answers_cleanly() {
    let gpu = probe_gpu(&GpuProbeOptions::quick(), &mut |_, _| {}).unwrap();
    let has_driver = std::path::Path::new("/proc/driver/nvidia/version").exists();
    match &gpu {
        GpuStatus::NotFound { reason } => {
            assert!(
                !has_driver,
                "a driver is installed but the probe found nothing: {reason}"
            );
            assert!(
                gpu.summary().starts_with("no CUDA GPU found: "),
                "{}",
                gpu.summary()
            );
        }
        GpuStatus::Found(info) => {
            let bw = info.bandwidths.as_ref().unwrap();
            assert!(bw.h2d_pinned_gb_per_s().unwrap() > 1.0);
            assert!(info.facts.vram_total_bytes > 1 << 30);
        }
        GpuStatus::NotBuilt => panic!("the cuda feature is on"),
    }
}
