//! A domain from a [`Manifest`]: its modules compiled and ordered, the
//! domain created with its pre-opens and its policy over the host's, the
//! modules loaded.

use wasmtime::Module;

use super::{DomainConfig, Host};
use crate::domain::Domain;
use crate::error::ManifestError;
use crate::manifest::Manifest;

impl Host {
    /// Creates the domain a manifest describes: compiles its modules
    /// ([`Host::compile_manifest`]), creates the domain with the manifest's
    /// pre-opens and its `[policy]` applied over the host's policy
    /// ([`Manifest::domain_policy`]), and loads the modules (in the order
    /// written, except that a module another imports comes first).
    ///
    /// ```
    /// use custody_host::{Host, Manifest, Policy};
    ///
    /// let dir = std::env::temp_dir().join(format!("custody-doc-manifest-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// std::fs::write(dir.join("lib.wat"), r#"(module (func (export "two") (result i32) i32.const 2))"#)?;
    /// std::fs::write(dir.join("app.wat"), r#"(module (import "lib" "two" (func $two (result i32)))
    ///     (func (export "run") (result i32) (i32.add (call $two) (call $two))))"#)?;
    /// let manifest = Manifest::from_toml(r#"
    ///     [[module]]
    ///     name = "app"
    ///     path = "app.wat"
    ///     [[module]]
    ///     name = "lib"
    ///     path = "lib.wat"
    ///     [policy]
    ///     deadline_ms = 500
    /// "#, &dir)?;
    /// let host = Host::new(Policy::default())?;
    /// let domain = host.create_domain_from_manifest(&manifest)?;
    /// assert_eq!(domain.call("run", &[])?[0].unwrap_i32(), 4);
    /// assert_eq!(domain.policy().deadline, Some(std::time::Duration::from_millis(500)));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// A [`ManifestError`] naming the manifest: [`ManifestError::Policy`],
    /// [`ManifestError::ImportCycle`], [`ManifestError::Host`] (the domain
    /// could not be created), [`ManifestError::Load`] naming the module that
    /// did not compile or load (the domain is then unloaded).
    pub fn create_domain_from_manifest(
        &self,
        manifest: &Manifest,
    ) -> Result<Domain, ManifestError> {
        let policy = manifest.domain_policy(self.policy())?;
        let modules = self.compile_manifest(manifest)?;
        let mut config = DomainConfig::new().policy(policy);
        for (name, dir) in manifest.preopens() {
            config = config.preopen(name, dir);
        }
        let domain = self
            .create_domain(config)
            .map_err(|error| manifest.host_error(error))?;
        for (name, module) in &modules {
            if let Err(error) = domain.load(name, module) {
                // Whatever the loaded modules' start functions opened is
                // released now, not when the last `Domain` goes.
                let _ = domain.unload();
                return Err(manifest.load_error(name, error));
            }
        }
        Ok(domain)
    }

    /// Compiles a manifest's modules ([`Host::compile_file`]) and returns
    /// them with their names in the order to load them: as written, except
    /// that a module another imports comes before it.
    ///
    /// # Errors
    /// [`ManifestError::Load`] naming a module that does not compile,
    /// [`ManifestError::ImportCycle`] if the modules import each other in a
    /// cycle.
    pub fn compile_manifest(
        &self,
        manifest: &Manifest,
    ) -> Result<Vec<(String, Module)>, ManifestError> {
        let compiled = manifest
            .modules()
            .iter()
            .map(|m| {
                self.compile_file(&m.path)
                    .map_err(|error| manifest.load_error(&m.name, error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let order = manifest.load_order(&compiled)?;
        Ok(order
            .into_iter()
            .map(|at| (manifest.modules()[at].name.clone(), compiled[at].clone()))
            .collect())
    }
}
