//! The Python reference implementation, installed from PyPI once per
//! target directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python reference implementation, `filebus==0.3.5`, installed from PyPI
/// into a virtual environment under the cargo target directory the first time
/// it is needed. Panics with a clear message when that cannot be done: these
/// tests are never skipped silently.
pub fn reference_filebus() -> PathBuf {
    reference_filebus_version("0.3.5")
}

/// The Python reference implementation at `version` (see [`reference_filebus`]).
pub fn reference_filebus_version(version: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("reference-filebus-{version}"));
    let program = venv.join("bin").join("filebus");
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reference-filebus.lock");
    let lock = File::create(&lock_path).expect("cannot create the reference install lock");
    lock.lock().expect("cannot lock the reference install lock");
    let ready = venv.join("installed");
    if !ready.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python)
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .unwrap_or_else(|error| {
                panic!("cannot run {python} to create a virtual environment: {error}")
            });
        assert!(
            status.success(),
            "`{python} -m venv {}` failed: {status}",
            venv.display()
        );
        let output = Command::new(venv.join("bin").join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("filebus=={version}"),
            ])
            .output()
            .expect("cannot run pip from the virtual environment");
        assert!(
            output.status.success(),
            "cannot install the reference implementation (pip install filebus=={version}), which the \
             interoperability tests need; is PyPI reachable?\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        File::create(&ready).expect("cannot mark the reference as installed");
    }
    assert!(
        program.exists(),
        "{} is missing after installation",
        program.display()
    );
    program
}
