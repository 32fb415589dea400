//! `sluice new NAME --lang rust|python|js`: a transform project in `./NAME`
//! whose golden tests pass out of the box.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::{Language, MANIFEST, check_name};

#[derive(clap::Args)]
pub struct NewArgs {
    /// The transform's name; the project goes in `./NAME`.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    lang: Language,
    /// Where to create the project (default: `./NAME`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A file of a new project: its path and its text, with `{{name}}`,
/// `{{language}}`, `{{language_name}}` and `{{source}}` filled in.
type Template = (&'static str, &'static str);

const COMMON: &[Template] = &[
    (MANIFEST, include_str!("../../../templates/common/transform.toml")),
    ("pipeline.toml", include_str!("../../../templates/common/pipeline.toml")),
    ("sample.ndjson", include_str!("../../../templates/common/sample.ndjson")),
    ("README.md", include_str!("../../../templates/common/README.md")),
    (".gitignore", include_str!("../../../templates/common/gitignore")),
    ("sdk/wit/transform.wit", include_str!("../../../../guest-sdk/wit/transform.wit")),
];

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("../../../templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../templates/rust/src/lib.rs")),
    (".cargo/config.toml", include_str!("../../../templates/rust/cargo-config.toml")),
    ("setup.sh", include_str!("../../../templates/rust/setup.sh")),
    ("sdk/sluice-guest/wit/transform.wit", include_str!("../../../../guest-sdk/wit/transform.wit")),
    ("sdk/sluice-guest/src/lib.rs", include_str!("../../../../guest-sdk/src/lib.rs")),
    ("sdk/sluice-guest/src/config.rs", include_str!("../../../../guest-sdk/src/config.rs")),
    ("sdk/sluice-guest/src/error.rs", include_str!("../../../../guest-sdk/src/error.rs")),
    ("sdk/sluice-guest/src/hash.rs", include_str!("../../../../guest-sdk/src/hash.rs")),
    ("sdk/sluice-guest/src/layout.rs", include_str!("../../../../guest-sdk/src/layout.rs")),
    ("sdk/sluice-guest/src/lookup.rs", include_str!("../../../../guest-sdk/src/lookup.rs")),
    ("sdk/sluice-guest/src/output.rs", include_str!("../../../../guest-sdk/src/output.rs")),
    ("sdk/sluice-guest/src/record.rs", include_str!("../../../../guest-sdk/src/record.rs")),
    ("sdk/sluice-guest/src/runner.rs", include_str!("../../../../guest-sdk/src/runner.rs")),
    ("sdk/sluice-guest/src/testing.rs", include_str!("../../../../guest-sdk/src/testing.rs")),
];

/// The Rust SDK's manifest inherits from this repository's workspace; a
/// copy stands alone.
const RUST_SDK_MANIFEST: &str = include_str!("../../../../guest-sdk/Cargo.toml");

const PYTHON: &[Template] = &[
    ("transform.py", include_str!("../../../templates/python/transform.py")),
    ("setup.sh", include_str!("../../../templates/python/setup.sh")),
    ("sdk/python/sluice/__init__.py", include_str!("../../../../guest-sdk/python/sluice/__init__.py")),
    ("sdk/python/sluice/_batch.py", include_str!("../../../../guest-sdk/python/sluice/_batch.py")),
];

const JS: &[Template] = &[
    ("transform.js", include_str!("../../../templates/js/transform.js")),
    ("package.json", include_str!("../../../templates/js/package.json")),
    ("setup.sh", include_str!("../../../templates/js/setup.sh")),
    ("sdk/js/sluice.js", include_str!("../../../../guest-sdk/js/sluice.js")),
];

pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    scaffold(&dir, &args.name, args.lang)?;
    println!("created {} ({} transform `{}`)", dir.display(), args.lang.name(), args.name);
    println!(
        "next:\n  cd {}\n  ./setup.sh      # once: the toolchain\n  sluice test     # builds, then runs the golden tests",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a new project into `dir`, which must not exist or be empty.
pub fn scaffold(dir: &Path, name: &str, language: Language) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        anyhow::bail!("{} already exists and is not empty; choose another name or --dir", dir.display());
    }
    let specific = match language {
        Language::Rust => RUST,
        Language::Python => PYTHON,
        Language::Js => JS,
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{language}}", language.key())
            .replace("{{language_name}}", language.name())
            .replace("{{source}}", language.source())
    };
    for (path, text) in COMMON.iter().chain(specific) {
        // The SDK is copied as it is; only the project's own files are templates.
        let text = if path.starts_with("sdk/") { text.to_string() } else { fill(text) };
        write(dir, path, &text)?;
    }
    if language == Language::Rust {
        write(dir, "sdk/sluice-guest/Cargo.toml", &standalone_sdk_manifest())?;
    }
    make_executable(&dir.join("setup.sh"))?;
    Ok(())
}

fn standalone_sdk_manifest() -> String {
    RUST_SDK_MANIFEST
        .lines()
        .filter(|line| !line.starts_with("rust-version.workspace") && !line.starts_with("license.workspace"))
        .map(|line| match line {
            "version.workspace = true" => format!("version = \"{}\"", env!("CARGO_PKG_VERSION")),
            "edition.workspace = true" => "edition = \"2024\"".to_string(),
            line => line.to_string(),
        })
        .chain(["\n# A crate of its own inside the transform project.".to_string()])
        .collect::<Vec<_>>()
        .join("\n")
}

fn write(dir: &Path, relative: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm_rustflags(config: &str) -> Vec<String> {
        let config: toml::Table = toml::from_str(config).expect("a cargo config");
        let flags = &config["target"]["wasm32-wasip2"]["rustflags"];
        flags.as_array().expect("a list").iter().map(|f| f.as_str().expect("a flag").to_string()).collect()
    }

    #[test]
    fn a_new_rust_project_is_compiled_with_the_flags_the_example_transforms_are_measured_with() {
        let (_, scaffolded) =
            RUST.iter().find(|(path, _)| *path == ".cargo/config.toml").expect("scaffolded");
        let examples = include_str!("../../../../pipelines/transforms/.cargo/config.toml");
        let test_guests = include_str!("../../../../tests/guests/.cargo/config.toml");
        assert_eq!(wasm_rustflags(scaffolded), wasm_rustflags(examples));
        assert_eq!(wasm_rustflags(test_guests), wasm_rustflags(examples));
        assert!(wasm_rustflags(scaffolded).contains(&"target-feature=+simd128".to_string()));
    }
}
