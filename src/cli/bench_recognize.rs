//! `invigil bench recognize`: detect + align + embed on both engines (tract,
//! and ONNX Runtime when its library is found) against dlib's
//! `face_recognition` on the same frames, photos and labelled faces:
//! latency per 640×480 frame and per full photo, throughput on `threads`
//! workers, ROC AUC, and the ratios.

use crate::recognize::{
    DecodeLimits, Embedding, Engine, OrtEngine, Pool, Range, Recognizer, THRESHOLD, TractEngine,
    decode, ort_library,
};
use anyhow::{Context, Result, bail};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// The peer's side, run inside its virtual environment.
const DLIB_SCRIPT: &str = include_str!("../../packaging/bench/dlib_bench.py");
/// Pinned peer versions; dlib builds from source (about ten minutes).
const DLIB_PACKAGES: &[&str] = &["dlib==20.0.1", "face_recognition==1.3.0", "setuptools<81"];

pub struct Options {
    pub photos: Vec<PathBuf>,
    pub iterations: usize,
    pub threads: usize,
    /// `DIR/<person>/<photo>` with one folder per person, for the AUC.
    pub labelled: Option<PathBuf>,
    /// The peer's virtual environment; `None` skips the peer.
    pub venv: Option<PathBuf>,
}

/// One engine's (or the peer's) figures.
struct Figures {
    name: String,
    frame_ms: Vec<f64>,
    photo_ms: Vec<f64>,
    throughput: f64,
    auc: Option<(f64, f64, usize)>,
}

pub fn default_venv() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("invigil/bench-venv")
}

pub fn run(options: &Options) -> Result<()> {
    let limits = DecodeLimits::default();
    let read = |path: &Path| -> Result<RgbImage> {
        let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
        decode(&bytes, &limits).with_context(|| path.display().to_string())
    };
    let photos = options
        .photos
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>>>()?;
    let frames: Vec<RgbImage> = photos.iter().map(|p| to_frame(p, 640, 480)).collect();
    let labelled = match &options.labelled {
        Some(dir) => labelled(dir)?
            .into_iter()
            .map(|(label, path)| Ok((label, padded(&read(&path)?))))
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let iterations = options.iterations.max(1);
    let threads = options.threads.max(1);

    let mut engines: Vec<Box<dyn Engine>> = vec![Box::new(TractEngine)];
    let library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    match ort_library(library.as_deref()) {
        Some(lib) => engines.push(Box::new(OrtEngine::load_library(&lib, threads)?)),
        None => println!("ONNX Runtime: no library (set ORT_DYLIB_PATH); tract only"),
    }
    let mut all = Vec::new();
    for engine in &engines {
        let recognizer = Arc::new(Recognizer::with_engine(engine.as_ref())?);
        all.push(ours(
            &recognizer,
            &frames,
            &photos,
            &labelled,
            iterations,
            threads,
        )?);
    }
    if let Some(venv) = &options.venv {
        all.push(dlib(
            venv, &frames, &photos, &labelled, iterations, threads,
        )?);
    }
    report(
        &all,
        iterations,
        frames.len(),
        photos.len(),
        labelled.len(),
        threads,
    );
    Ok(())
}

fn ours(
    r: &Arc<Recognizer>,
    frames: &[RgbImage],
    photos: &[RgbImage],
    labelled: &[(String, RgbImage)],
    iterations: usize,
    threads: usize,
) -> Result<Figures> {
    let frame_work = |r: &Recognizer, image: &RgbImage, range| {
        let faces = r.detect(image, range)?;
        let crops = r.aligned(image, &faces);
        r.embed_aligned(&crops).map(|e| e.len())
    };
    for frame in frames {
        frame_work(r, frame, Range::Near)?;
    }
    let time = |image: &RgbImage, range| -> Result<f64> {
        let start = Instant::now();
        frame_work(r, image, range)?;
        Ok(start.elapsed().as_secs_f64() * 1000.0)
    };
    let frame_ms = (0..iterations)
        .map(|i| time(&frames[i % frames.len()], Range::Near))
        .collect::<Result<Vec<_>>>()?;
    let photo_ms = photos
        .iter()
        .map(|p| time(p, Range::Far))
        .collect::<Result<Vec<_>>>()?;

    let pool = Pool::new(Arc::clone(r), threads, iterations + labelled.len())?;
    let start = Instant::now();
    let jobs = (0..iterations)
        .map(|i| {
            let frame = frames[i % frames.len()].clone();
            pool.submit(move |r| frame_work(r, &frame, Range::Near))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for job in jobs {
        job.blocking_recv()??;
    }
    let throughput = iterations as f64 / start.elapsed().as_secs_f64();

    let jobs = labelled
        .iter()
        .map(|(_, image)| {
            let image = image.clone();
            pool.submit(move |r| Ok(r.main_embedding(&image, "labelled").ok().map(|(_, e)| e)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut embeddings = Vec::new();
    for job in jobs {
        embeddings.push(job.blocking_recv()??);
    }
    Ok(Figures {
        name: r.engine().to_string(),
        frame_ms,
        photo_ms,
        throughput,
        auc: score(labelled, &embeddings),
    })
}

fn dlib(
    venv: &Path,
    frames: &[RgbImage],
    photos: &[RgbImage],
    labelled: &[(String, RgbImage)],
    iterations: usize,
    threads: usize,
) -> Result<Figures> {
    let python = ensure_venv(venv)?;
    // The peer reads the very pixels invigil used, as PNG files.
    let dir = std::env::temp_dir().join(format!("invigil-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let save = |kind: &str, images: &mut dyn Iterator<Item = &RgbImage>| -> Result<Vec<String>> {
        images
            .enumerate()
            .map(|(i, img)| {
                let path = dir.join(format!("{kind}-{i}.png"));
                img.save(&path)?;
                Ok(path.display().to_string())
            })
            .collect()
    };
    let job = serde_json::json!({
        "frames": save("frame", &mut frames.iter())?,
        "photos": save("photo", &mut photos.iter())?,
        "labelled": save("labelled", &mut labelled.iter().map(|(_, i)| i))?,
        "iterations": iterations,
        "threads": threads,
    });
    let script = dir.join("dlib_bench.py");
    std::fs::write(&script, DLIB_SCRIPT)?;
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| python.display().to_string())?;
    serde_json::to_writer(child.stdin.take().context("stdin")?, &job)?;
    let out = child.wait_with_output()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("the dlib side failed ({})", out.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("dlib output")?;
    let floats = |key: &str| -> Vec<f64> {
        v[key]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    let embeddings: Vec<Option<Embedding>> = v["labelled"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e.as_array().map(|xs| {
                        Embedding(
                            xs.iter()
                                .filter_map(|x| x.as_f64())
                                .map(|x| x as f32)
                                .collect(),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Figures {
        name: "dlib".into(),
        frame_ms: floats("frame_ms"),
        photo_ms: floats("photo_ms"),
        throughput: v["throughput"].as_f64().unwrap_or(0.0),
        auc: score(labelled, &embeddings),
    })
}

/// The peer's interpreter, installing the peer first when missing.
fn ensure_venv(venv: &Path) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import face_recognition"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    if Command::new("c++").arg("--version").output().is_err() {
        bail!(
            "dlib compiles from source: install a C++ compiler (apt-get install build-essential)"
        );
    }
    println!(
        "installing {} into {} (dlib compiles, about ten minutes)",
        DLIB_PACKAGES.join(" "),
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let pip = venv.join("bin/pip");
    // dlib's build runs CMake; the PyPI package brings it into the venv.
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for packages in [&["cmake"][..], DLIB_PACKAGES] {
        let status = Command::new(&pip)
            .args(["install", "-q"])
            .args(packages)
            .env("PATH", &path)
            .status()?;
        if !status.success() {
            bail!("pip install {} failed", packages.join(" "));
        }
    }
    if !ready(&python) {
        bail!("face_recognition does not import in {}", venv.display());
    }
    Ok(python)
}

/// ROC AUC, TPR at 1 % FPR and the number of faces not found, over every
/// pair of labelled faces; `None` without labelled faces.
fn score(
    labelled: &[(String, RgbImage)],
    embeddings: &[Option<Embedding>],
) -> Option<(f64, f64, usize)> {
    if labelled.is_empty() {
        return None;
    }
    let found: Vec<_> = labelled
        .iter()
        .zip(embeddings)
        .filter_map(|((label, _), e)| e.as_ref().map(|e| (label, e)))
        .collect();
    let (mut same, mut different) = (Vec::new(), Vec::new());
    for (i, (la, ea)) in found.iter().enumerate() {
        for (lb, eb) in &found[i + 1..] {
            let d = ea.distance(eb);
            if la == lb {
                same.push(d)
            } else {
                different.push(d)
            }
        }
    }
    different.sort_by(f32::total_cmp);
    if same.is_empty() || different.is_empty() {
        return Some((0.0, 0.0, labelled.len() - found.len()));
    }
    let mut wins = 0.0;
    for &s in &same {
        let below = different.partition_point(|&d| d < s);
        let ties = different[below..].partition_point(|&d| d <= s);
        wins += (different.len() - below - ties) as f64 + ties as f64 / 2.0;
    }
    let auc = wins / (same.len() as f64 * different.len() as f64);
    // Largest threshold with at most 1 % of different pairs under it.
    let allowed = different.len() / 100;
    let cut = different[allowed];
    let tpr = same.iter().filter(|&&d| d < cut).count() as f64 / same.len() as f64;
    Some((auc, tpr, labelled.len() - found.len()))
}

fn report(
    all: &[Figures],
    iterations: usize,
    frames: usize,
    photos: usize,
    labelled: usize,
    threads: usize,
) {
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let p50 = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "{iterations} runs over {frames} frames of 640×480, {photos} full photos, \
         {labelled} labelled faces, throughput on {threads} workers; shipped threshold {THRESHOLD}"
    );
    print!("{:<32}", "");
    all.iter().for_each(|f| print!("{:>14}", f.name));
    println!();
    let row = |label: &str, value: &dyn Fn(&Figures) -> String| {
        print!("{label:<32}");
        all.iter().for_each(|f| print!("{:>14}", value(f)));
        println!();
    };
    row("frame latency mean (ms)", &|f| {
        format!("{:.1}", mean(&f.frame_ms))
    });
    row("frame latency p50 (ms)", &|f| {
        format!("{:.1}", p50(&f.frame_ms))
    });
    row("full photo latency mean (ms)", &|f| {
        format!("{:.1}", mean(&f.photo_ms))
    });
    row(&format!("throughput, {threads} workers (fps)"), &|f| {
        format!("{:.1}", f.throughput)
    });
    row("ROC AUC", &|f| {
        f.auc.map_or("-".into(), |a| format!("{:.5}", a.0))
    });
    row("TPR at 1 % FPR", &|f| {
        f.auc.map_or("-".into(), |a| format!("{:.3}", a.1))
    });
    row("labelled faces not found", &|f| {
        f.auc.map_or("-".into(), |a| a.2.to_string())
    });
    if let Some(peer) = all.iter().find(|f| f.name == "dlib") {
        for f in all.iter().filter(|f| f.name != "dlib") {
            println!(
                "{} vs dlib: frame latency {:.1}× faster, photo latency {:.1}× faster, throughput {:.1}×",
                f.name,
                mean(&peer.frame_ms) / mean(&f.frame_ms),
                mean(&peer.photo_ms) / mean(&f.photo_ms),
                f.throughput / peer.throughput
            );
        }
    }
}

/// `DIR/<person>/<photo>`, sorted; the folder names the person.
fn labelled(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for person in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let person = person?.path();
        if !person.is_dir() {
            continue;
        }
        let label = person
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for photo in std::fs::read_dir(&person)? {
            let photo = photo?.path();
            if photo.is_file() {
                out.push((label.clone(), photo));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Tight face crops centred on a black canvas twice their size, as a webcam
/// frame or a profile photo frames a face.
fn padded(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut canvas = RgbImage::new(w * 2, h * 2);
    image::imageops::overlay(&mut canvas, image, i64::from(w / 2), i64::from(h / 2));
    canvas
}

/// Fits `image` into a black `width`×`height` frame, as a webcam would show it.
pub fn to_frame(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let scale = (width as f32 / image.width() as f32).min(height as f32 / image.height() as f32);
    let (w, h) = (
        ((image.width() as f32 * scale) as u32).max(1),
        ((image.height() as f32 * scale) as u32).max(1),
    );
    let resized = image::imageops::resize(image, w, h, image::imageops::FilterType::Triangle);
    let mut frame = RgbImage::new(width, height);
    image::imageops::overlay(
        &mut frame,
        &resized,
        i64::from((width - w) / 2),
        i64::from((height - h) / 2),
    );
    frame
}
