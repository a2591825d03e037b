//! The published reports: what is committed under reports/ is what the code produces, and
//! the HTML report renders in a real browser.

use super::root;
use scenarios::published::{published, render};

#[test]
fn the_committed_reports_are_what_the_code_produces() {
    let root = root();
    let mut stale = Vec::new();
    for report in published() {
        let files = render(&report, &root, 2).unwrap_or_else(|e| panic!("{e}"));
        for (path, contents) in files {
            if path.extension().is_some_and(|e| e == "md") {
                insta::assert_snapshot!(format!("report_{}", report.name), contents);
            }
            let committed = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
            if committed != contents {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "reports differ from what the code produces; run `just reports` and review the diff: {stale:?}"
    );
}

#[test]
fn every_broken_promise_in_the_reports_has_a_reproduction_or_a_documented_limitation() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("reports/README.md")).unwrap();
    let regressions: Vec<String> = std::fs::read_dir(root.join("scenarios/regressions"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for report in published() {
        let json = std::fs::read_to_string(root.join(format!("reports/{}.json", report.name))).unwrap();
        let matrix: scenarios::compare::Matrix = serde_json::from_str(&json).unwrap();
        for row in matrix.rows.iter().filter(|r| r.kept.broken > 0) {
            let path = &row.variant.path;
            let reproduced = path.starts_with("scenarios/regressions/")
                || regressions
                    .iter()
                    .any(|r| r.contains(&format!("from {path} seed")));
            let documented = readme.contains(&format!("`{path}`"));
            assert!(
                reproduced || documented,
                "{path} breaks its promise in reports/{}.md: save a shrunk reproduction \
                 (jetsam shrink --save) or document the limitation in reports/README.md",
                report.name
            );
        }
    }
}

#[test]
fn the_html_report_renders_the_matrix_and_a_timeline_in_headless_chromium() {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        assert!(
            std::env::var_os("JETSAM_REQUIRE_BROWSER").is_none(),
            "JETSAM_REQUIRE_BROWSER is set and no chromium is installed (apt-get install chromium)"
        );
        eprintln!("SKIPPED: no chromium on PATH (CI installs it and sets JETSAM_REQUIRE_BROWSER)");
        return;
    };
    let root = root();
    let loaded = vec![
        super::load("scenarios/go-channel/swarm-careless.toml"),
        super::load("scenarios/nsq/kill-with-memory-backlog.toml"),
    ];
    let matrix = scenarios::compare::compare(&loaded, 1..3, 2, &|_, _| {});
    let page = scenarios::html::report(&matrix, &root).unwrap();
    let dir = root.join("target/html-report-test");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("report.html");
    std::fs::write(&file, &page).unwrap();
    let url = format!("file://{}", file.display());
    let headless = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
    ];
    let dom = std::process::Command::new(browser)
        .args(headless)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    // The browser parsed the page: the matrix table with a row per variant, coloured cells,
    // and the timelines' SVG (a sequence diagram and charts).
    assert!(
        dom.contains("<table class=\"matrix\">"),
        "no matrix in the rendered DOM"
    );
    assert_eq!(
        dom.matches("<tr>").count(),
        1 + loaded.len(),
        "a header and a row per variant"
    );
    assert!(
        dom.contains("class=\"broken\""),
        "the careless shutdown breaks its promise"
    );
    assert!(dom.contains("<svg class=\"sequence\""), "no sequence diagram");
    assert!(dom.contains("<svg class=\"chart\""), "no queue chart");
    assert!(
        dom.contains("kill nsqd1"),
        "the kill is named as the documented window"
    );
    // A screenshot for people to look at (target/html-report-test/report.png).
    let shot = dir.join("report.png");
    let status = std::process::Command::new(browser)
        .args(headless)
        .args(["--hide-scrollbars", "--window-size=1400,2400"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "an empty screenshot"
    );
}
