//! The web interface in a real headless Chromium (fake camera and microphone),
//! driven by Playwright scripts under `tests/ui/`: an exam day from preparing
//! users to the conclusion, with axe-core on every page and no console error
//! or CSP violation allowed; screenshots of the pages land in
//! `target/ui/screenshots`. `tests/run` installs Chromium and the scripts'
//! npm packages; without them the test fails and says what to install.

use crate::harness::Daemon;
use std::path::PathBuf;
use std::process::Command;

const PW: &str = "Manager pass 123";

/// Where `tests/run` installed playwright-core and axe-core.
fn ui_modules() -> PathBuf {
    let dir = std::env::var_os("INVIGIL_UI_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui"));
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {} (tests/run installs it)",
        dir.display()
    );
    dir
}

/// A fake camera that shows a real face: an ORL test portrait as a 640×480
/// `.y4m` clip (made with ffmpeg, which `tests/run` installs). The portrait
/// is cropped tight to the face; it is framed on a canvas twice its size
/// first, as a webcam frames a face, so the identity check finds it.
fn face_clip() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = ui_modules().join("face-framed.y4m");
    if !out.exists() {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-loop", "1", "-framerate", "15", "-i"])
            .arg(root.join("tests/data/faces/orl/s1/1.pgm"))
            .args(["-t", "3", "-r", "15", "-pix_fmt", "yuv420p", "-vf"])
            .arg("pad=iw*2:ih*2:iw/2:ih/2,scale=-2:480,pad=640:480:(ow-iw)/2:(oh-ih)/2")
            .arg(&out)
            .status()
            .expect("ffmpeg runs (tests/run installs it)");
        assert!(status.success(), "ffmpeg made no clip");
    }
    out
}

fn run_script(script: &str, base: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ui")
        .join(script);
    let out = Command::new("node")
        .arg(&path)
        .env("BASE", base)
        .env("MANAGER_PASSWORD", PW)
        .env("INVIGIL_UI_MODULES", ui_modules())
        .env("SCREENSHOTS", ui_modules().join("screenshots"))
        .env("FAKE_CAMERA", face_clip())
        .output()
        .expect("node runs (tests/run installs nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exam_day_in_chromium() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let base = format!("https://localhost:{}", d.running.https_addr.port());
    let out = tokio::task::spawn_blocking(move || run_script("exam-day.mjs", &base))
        .await
        .unwrap();
    assert!(out.contains("\"ok\":true"), "{out}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_and_administrator_pages_in_chromium() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let base = format!("https://localhost:{}", d.running.https_addr.port());
    let out = tokio::task::spawn_blocking(move || run_script("admin-pages.mjs", &base))
        .await
        .unwrap();
    assert!(out.contains("\"ok\":true"), "{out}");
    d.stop().await;
}

/// Every text the interface passes to `t('…')` has a Russian translation,
/// with the same `{placeholders}`; a catalog entry nothing uses is reported too.
#[test]
fn russian_catalog_covers_every_text() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/web");
    let catalog: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(root.join("i18n/ru.json")).unwrap()).unwrap();
    let literal = regex_lite_literals(&root.join("js"));
    let missing: Vec<_> = literal
        .iter()
        .filter(|k| !catalog.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "untranslated: {missing:#?}");
    let placeholders = |s: &str| {
        let mut v: Vec<String> = s
            .split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}').map(|(name, _)| name.to_string()))
            .collect();
        v.sort();
        v
    };
    for (en, ru) in &catalog {
        assert_eq!(
            placeholders(en),
            placeholders(ru),
            "placeholders differ: {en}"
        );
    }
}

/// The string literals in the first argument of every `t(…)` call (both arms
/// of a `t(a ? 'x' : 'y')` included) in every module under `dir`.
fn regex_lite_literals(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices("t(") {
                // Only calls of `t` itself, not `post(`, `set(`, …
                let before = text[..i].chars().next_back().unwrap_or(' ');
                if before.is_alphanumeric() || before == '_' || before == '.' {
                    continue;
                }
                out.extend(first_argument_literals(&text[i + 2..]));
            }
        }
    }
    out
}

/// The `'…'` literals of a call's first argument: up to the first `,` or the
/// closing `)` outside quotes and brackets.
fn first_argument_literals(args: &str) -> Vec<String> {
    let (mut found, mut depth, mut chars) = (Vec::new(), 0i32, args.chars());
    while let Some(c) = chars.next() {
        match c {
            '\'' | '`' | '"' => {
                let mut literal = String::new();
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => literal.extend(chars.next()),
                        d if d == c => break,
                        d => literal.push(d),
                    }
                }
                // A literal compared with (`x === 'a' ? …`) is not a text.
                if c == '\'' && depth == 0 && !chars.as_str().trim_start().starts_with('?') {
                    found.push(literal);
                }
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => break,
            _ => {}
        }
    }
    found
}
