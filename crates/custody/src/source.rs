//! What `custody run` runs (one module, or the domain a manifest describes)
//! and the policy flags, which apply over the policy file and over a
//! manifest's `[policy]`.

use std::path::Path;
use std::time::Duration;

use custody_host::{Category, Manifest, Policy};

use crate::args::RunArgs;
use crate::outcome::Failure;

/// What to run: one module, or the domain a manifest describes.
pub(crate) enum Source<'a> {
    Module(&'a Path),
    Manifest(Box<Manifest>),
}

/// The source (a manifest read), and the export's arguments. With
/// `--manifest`, the MODULE position holds the first argument (clap cannot
/// tell them apart).
pub(crate) fn source(args: &RunArgs) -> Result<(Source<'_>, Vec<String>), Failure> {
    let read = |path: &Path| Manifest::from_file(path).map(|m| Source::Manifest(Box::new(m)));
    match (&args.module, &args.manifest) {
        (Some(module), None) => Ok((Source::Module(module), args.args.clone())),
        (None, Some(manifest)) => Ok((read(manifest)?, args.args.clone())),
        (Some(first), Some(manifest)) => {
            if first.extension().is_some_and(|e| e == "wasm" || e == "wat") {
                return Err(Failure::usage(format!(
                    "give a MODULE or --manifest, not both: {} and --manifest {}",
                    first.display(),
                    manifest.display()
                )));
            }
            let mut call_args = vec![first.to_string_lossy().into_owned()];
            call_args.extend(args.args.iter().cloned());
            Ok((read(manifest)?, call_args))
        }
        (None, None) => Err(Failure::usage("give a MODULE to run, or --manifest FILE")),
    }
}

/// The policy flags, which apply over the policy file and over a
/// manifest's `[policy]`.
pub(crate) struct Flags {
    deadline: Option<Duration>,
    unload_timeout: Option<Duration>,
    memory: Option<usize>,
    denied: Vec<Category>,
}

impl Flags {
    pub(crate) fn parse(args: &RunArgs) -> Result<Flags, Failure> {
        let denied = args
            .denied
            .iter()
            .map(|name| {
                Category::from_name(name).ok_or_else(|| {
                    let known: Vec<_> = Category::ALL.iter().map(|c| c.name()).collect();
                    Failure::usage(format!(
                        "--deny {name}: unknown category; known: {}",
                        known.join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Flags {
            deadline: args.deadline,
            unload_timeout: args.unload_timeout,
            memory: args.memory,
            denied,
        })
    }

    pub(crate) fn apply(&self, policy: &mut Policy) {
        if self.deadline.is_some() {
            policy.deadline = self.deadline;
        }
        if self.memory.is_some() {
            policy.memory_limit = self.memory;
        }
        if let Some(timeout) = self.unload_timeout {
            policy.unload_timeout = timeout;
            policy.unload_grace = policy.unload_grace.min(timeout / 2);
        }
        for &category in &self.denied {
            if !policy.denied.contains(&category) {
                policy.denied.push(category);
            }
        }
    }
}
