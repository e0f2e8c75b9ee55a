//! Which kubeconfig `rudder serve` uses when none is named, as kubectl finds it: the files
//! listed in `KUBECONFIG` (separated by `:`), missing ones skipped and the rest merged with the
//! first file to set a value winning; with `KUBECONFIG` unset or empty, `~/.kube/config`. Only
//! finds and reads the files; connecting is `serve`'s job.

use std::ffi::OsStr;
use std::path::PathBuf;

use kube::config::{Kubeconfig, KubeconfigError};

/// Why no kubeconfig could be read.
#[derive(Debug, thiserror::Error)]
pub enum DefaultKubeconfigError {
    #[error("no kubeconfig: none of the files in KUBECONFIG exists ({0})")]
    NoneExists(String),
    #[error("no kubeconfig: KUBECONFIG is unset and there is no home directory")]
    NoHome,
    #[error(transparent)]
    Read(#[from] KubeconfigError),
}

/// The files kubectl would read, in order: those of `kubeconfig_env` (the value of
/// `KUBECONFIG`), else `~/.kube/config` under `home`.
pub fn kubeconfig_paths(
    kubeconfig_env: Option<&OsStr>,
    home: Option<PathBuf>,
) -> Result<Vec<PathBuf>, DefaultKubeconfigError> {
    let listed: Vec<PathBuf> = kubeconfig_env
        .map(|value| {
            std::env::split_paths(value)
                .filter(|path| !path.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        let home = home.ok_or(DefaultKubeconfigError::NoHome)?;
        return Ok(vec![home.join(".kube").join("config")]);
    }
    Ok(listed)
}

/// Whether kubectl would find a kubeconfig here: one of the files of [`kubeconfig_paths`]
/// exists.
pub fn default_kubeconfig_exists() -> bool {
    kubeconfig_paths(
        std::env::var_os("KUBECONFIG").as_deref(),
        std::env::home_dir(),
    )
    .is_ok_and(|paths| paths.iter().any(|path| path.is_file()))
}

/// The kubeconfig kubectl would use: the existing files of [`kubeconfig_paths`], merged.
pub fn read_default_kubeconfig() -> Result<Kubeconfig, DefaultKubeconfigError> {
    let paths = kubeconfig_paths(
        std::env::var_os("KUBECONFIG").as_deref(),
        std::env::home_dir(),
    )?;
    let existing: Vec<&PathBuf> = paths.iter().filter(|path| path.exists()).collect();
    if existing.is_empty() {
        let listed: Vec<String> = paths
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        return Err(DefaultKubeconfigError::NoneExists(listed.join(", ")));
    }
    let mut merged = Kubeconfig::default();
    for path in existing {
        merged = merged.merge(Kubeconfig::read_from(path)?)?;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_lists_files_in_order_and_falls_back_to_the_home_directory() {
        let home = Some(PathBuf::from("/home/user"));
        assert_eq!(
            kubeconfig_paths(Some(OsStr::new("/a/config::/b/config")), home.clone()).unwrap(),
            [PathBuf::from("/a/config"), PathBuf::from("/b/config")]
        );
        assert_eq!(
            kubeconfig_paths(Some(OsStr::new("")), home.clone()).unwrap(),
            [PathBuf::from("/home/user/.kube/config")]
        );
        assert_eq!(
            kubeconfig_paths(None, home).unwrap(),
            [PathBuf::from("/home/user/.kube/config")]
        );
        assert!(matches!(
            kubeconfig_paths(None, None),
            Err(DefaultKubeconfigError::NoHome)
        ));
    }
}
