//! [`Manifest`]: a domain described in TOML: its modules, its pre-opened
//! directories and its policy (over the host's). Reading one checks
//! everything that can be checked without a host: unknown keys, names,
//! engine-wide policy keys, and that every module file exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wasmtime::Module;

use crate::config::{Policy, PolicyOverrides};
use crate::error::{HostError, LoadError, ManifestError};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    name: Option<String>,
    #[serde(default, rename = "module")]
    modules: Vec<ModuleEntry>,
    #[serde(default)]
    preopen: BTreeMap<String, PathBuf>,
    #[serde(default)]
    policy: PolicyOverrides,
}

/// One `[[module]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleEntry {
    name: String,
    path: PathBuf,
}

/// A domain described by a TOML manifest (`custody run --manifest FILE`,
/// [`Host::create_domain_from_manifest`](crate::Host::create_domain_from_manifest)).
///
/// ```toml
/// name = "thumbnailer"
/// [[module]]                 # loaded in this order; `name` is what other modules import it as
/// name = "main"
/// path = "thumbnailer.wasm"
/// [[module]]
/// name = "png"
/// path = "lib/png.wasm"
/// [preopen]                  # guest name = host directory
/// data = "data"
/// [policy]                   # this domain's policy: overrides the host's, key by key
/// deadline_ms = 500
/// memory_limit = "64MiB"
/// ```
///
/// Unknown keys are errors; relative paths are relative to the manifest's
/// directory. Modules load in the order written, except that a module
/// another imports loads before it (so `main` above may import `png`); a
/// cycle of imports between them is an error. The `[policy]` table takes
/// the keys of the policy file ([`Policy::from_toml`]) and applies them over
/// the host's policy key by key; an engine-wide key
/// ([`ENGINE_WIDE_KEYS`](crate::ENGINE_WIDE_KEYS)) is an error there.
#[derive(Clone, Debug)]
pub struct Manifest {
    file: Option<PathBuf>,
    name: Option<String>,
    modules: Vec<ManifestModule>,
    preopens: Vec<(String, PathBuf)>,
    policy: PolicyOverrides,
}

/// One `[[module]]` of a [`Manifest`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestModule {
    /// The name it is loaded under (what other modules import it as).
    pub name: String,
    /// Its file (`.wasm` or `.wat`), resolved against the manifest's
    /// directory.
    pub path: PathBuf,
}

impl Manifest {
    /// Reads a manifest file; relative paths in it are relative to its
    /// directory.
    ///
    /// # Errors
    /// A [`ManifestError`] naming the file and what is wrong: it cannot be
    /// read, a key is unknown or of the wrong type (with its line), a module
    /// file is missing, a name is used twice, the `[policy]` table is invalid
    /// or sets an engine-wide key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Manifest::parse(&text, base, Some(path.to_path_buf()))
    }

    /// Reads a manifest from TOML text; relative paths in it are relative to
    /// `base_dir`.
    ///
    /// # Errors
    /// As [`Manifest::from_file`].
    pub fn from_toml(text: &str, base_dir: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, base_dir.as_ref(), None)
    }

    fn parse(text: &str, base: &Path, file: Option<PathBuf>) -> Result<Manifest, ManifestError> {
        let parsed: ManifestFile = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: file.clone(),
            line: e.span().map(|span| line_of(text, span.start)),
            message: e.message().to_string(),
            source: Some(e.into()),
        })?;
        if parsed.modules.is_empty() {
            return Err(ManifestError::NoModules { file });
        }
        let mut modules: Vec<ManifestModule> = Vec::with_capacity(parsed.modules.len());
        for entry in parsed.modules {
            if entry.name.is_empty() {
                return Err(ManifestError::Invalid {
                    file,
                    message: "a [[module]] has an empty name".to_string(),
                });
            }
            if modules.iter().any(|m| m.name == entry.name) {
                return Err(ManifestError::Invalid {
                    file,
                    message: format!("two [[module]]s are named {:?}", entry.name),
                });
            }
            let path = base.join(&entry.path);
            if !path.is_file() {
                return Err(ManifestError::MissingModule {
                    file,
                    module: entry.name,
                    path,
                });
            }
            modules.push(ManifestModule {
                name: entry.name,
                path,
            });
        }
        let mut preopens = Vec::with_capacity(parsed.preopen.len());
        for (name, dir) in parsed.preopen {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(ManifestError::Invalid {
                    file,
                    message: format!("[preopen] {name:?}: a guest name is one path component"),
                });
            }
            preopens.push((name, base.join(dir)));
        }
        if let Some(key) = parsed.policy.engine_wide_keys().first() {
            return Err(ManifestError::EngineWide {
                file,
                key: (*key).to_string(),
            });
        }
        Ok(Manifest {
            file,
            name: parsed.name,
            modules,
            preopens,
            policy: parsed.policy,
        })
    }

    /// The file it was read from (`None` if read from text).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The domain's name (`name = ...`), if the manifest gives one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The modules, as written.
    pub fn modules(&self) -> &[ManifestModule] {
        &self.modules
    }

    /// The pre-opened directories: (guest name, host directory), by name.
    pub fn preopens(&self) -> &[(String, PathBuf)] {
        &self.preopens
    }

    /// The `[policy]` table.
    pub fn policy(&self) -> &PolicyOverrides {
        &self.policy
    }

    /// The domain's policy: the `[policy]` table applied over `host`'s.
    ///
    /// # Errors
    /// [`ManifestError::Policy`] if the result does not validate.
    pub fn domain_policy(&self, host: &Policy) -> Result<Policy, ManifestError> {
        let mut policy = host.clone();
        self.policy
            .apply_to(&mut policy)
            .map_err(|error| ManifestError::Policy {
                file: self.file.clone(),
                error,
            })?;
        Ok(policy)
    }

    /// The order to load `compiled` (the manifest's modules, compiled, in
    /// the order written) in: as written, except that a module another
    /// imports comes before it.
    pub(crate) fn load_order(&self, compiled: &[Module]) -> Result<Vec<usize>, ManifestError> {
        fn visit(
            at: usize,
            manifest: &Manifest,
            compiled: &[Module],
            path: &mut Vec<usize>,
            order: &mut Vec<usize>,
        ) -> Result<(), ManifestError> {
            if order.contains(&at) {
                return Ok(());
            }
            if let Some(start) = path.iter().position(|&p| p == at) {
                let mut cycle: Vec<String> = path[start..]
                    .iter()
                    .map(|&i| manifest.modules[i].name.clone())
                    .collect();
                cycle.push(manifest.modules[at].name.clone());
                return Err(ManifestError::ImportCycle {
                    file: manifest.file.clone(),
                    cycle,
                });
            }
            path.push(at);
            let name = &manifest.modules[at].name;
            for import in compiled[at].imports() {
                let dependency = manifest
                    .modules
                    .iter()
                    .position(|m| m.name == import.module() && &m.name != name);
                if let Some(dependency) = dependency {
                    visit(dependency, manifest, compiled, path, order)?;
                }
            }
            path.pop();
            order.push(at);
            Ok(())
        }
        let mut order = Vec::with_capacity(compiled.len());
        for at in 0..compiled.len() {
            visit(at, self, compiled, &mut Vec::new(), &mut order)?;
        }
        Ok(order)
    }

    /// A [`ManifestError::Load`] for module `module`.
    pub(crate) fn load_error(&self, module: &str, error: LoadError) -> ManifestError {
        ManifestError::Load {
            file: self.file.clone(),
            module: module.to_string(),
            error,
        }
    }

    /// A [`ManifestError::Host`].
    pub(crate) fn host_error(&self, error: HostError) -> ManifestError {
        ManifestError::Host {
            file: self.file.clone(),
            error,
        }
    }
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
