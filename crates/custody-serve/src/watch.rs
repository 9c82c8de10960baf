//! `watch = true`: a plugin is reloaded when its module file changes (or
//! its manifest, or a module the manifest names). The watcher is the
//! `notify` crate's (inotify on Linux) on the files' directories, not on
//! the files: an editor that saves by writing a new file and renaming it
//! over the old one replaces the inode a file watch would follow. Events
//! are debounced: an editor's save is several events (truncate, writes,
//! close, rename), and a reload begins only after [`QUIET`] without a new
//! one (or [`MAX_DELAY`] after the first), so it reads the file whole. A
//! save caught halfway is a broken version, refused while the old one
//! serves; the save's next event reloads again. The configuration file
//! itself is not watched: reloading the configuration is not supported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custody_host::Manifest;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::PluginConfig;
use crate::server::ServerState;

/// A change is acted on after this long without another.
pub const QUIET: Duration = Duration::from_millis(150);
/// ... or this long after the first change of a burst, whatever comes.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// The watcher of a server's `watch = true` plugins: it stops when
/// dropped.
pub struct PluginWatcher {
    task: JoinHandle<()>,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginWatcher").finish_non_exhaustive()
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        // The task owns the `notify` watcher: aborting it drops the
        // watcher, which stops its thread and closes its fds.
        self.task.abort();
    }
}

/// The files a plugin's reload reads: its module, or its manifest and the
/// manifest's modules (as the manifest names them now).
fn watched_files(config: &PluginConfig) -> Vec<PathBuf> {
    if config.embedded.is_some() {
        return Vec::new();
    }
    let mut files: Vec<PathBuf> = config.module.iter().cloned().collect();
    if let Some(manifest) = &config.manifest {
        files.push(manifest.clone());
        if let Ok(parsed) = Manifest::from_file(manifest) {
            files.extend(parsed.modules().iter().map(|m| m.path.clone()));
        }
    }
    files
}

/// A file as its directory's events name it: the directory made
/// absolute and resolved, the file's name joined.
fn event_path(file: &Path) -> Option<PathBuf> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(file.file_name()?))
}

/// Which plugins each watched file belongs to.
fn watch_map(state: &ServerState) -> BTreeMap<PathBuf, BTreeSet<String>> {
    let mut map: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for plugin in state.plugins().iter().filter(|p| p.config.watch) {
        for file in watched_files(&plugin.config) {
            if let Some(path) = event_path(&file) {
                map.entry(path)
                    .or_default()
                    .insert(plugin.config.name.clone());
            }
        }
    }
    map
}

/// Adds the plugins whose files are among `paths` to `changed`.
fn note(
    map: &BTreeMap<PathBuf, BTreeSet<String>>,
    paths: Vec<PathBuf>,
    changed: &mut BTreeSet<String>,
) {
    for path in paths {
        if let Some(plugins) = map.get(&path) {
            changed.extend(plugins.iter().cloned());
        }
    }
}

/// Watches the directories of `map`'s files not watched yet.
fn watch_dirs(
    watcher: &mut RecommendedWatcher,
    map: &BTreeMap<PathBuf, BTreeSet<String>>,
    watched: &mut BTreeSet<PathBuf>,
) -> notify::Result<()> {
    for dir in map.keys().filter_map(|file| file.parent()) {
        if !watched.contains(dir) {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            watched.insert(dir.to_path_buf());
        }
    }
    Ok(())
}

impl ServerState {
    /// Starts watching the files of the plugins with `watch = true`;
    /// `None` when there are none. Must run on a tokio runtime.
    ///
    /// # Errors
    /// The watcher's, when it cannot be made or a directory cannot be
    /// watched (it does not exist, or the inotify limits are reached).
    pub fn watch(self: &Arc<Self>) -> notify::Result<Option<PluginWatcher>> {
        let mut map = watch_map(self);
        if map.is_empty() {
            return Ok(None);
        }
        let (tx, mut events) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match event {
                    // Opening and reading a file changes nothing.
                    Ok(event) if !matches!(event.kind, EventKind::Access(_)) => {
                        let _ = tx.send(event.paths);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(target: "custody::serve::reload", "watch: {e}"),
                }
            })?;
        let mut watched = BTreeSet::new();
        watch_dirs(&mut watcher, &map, &mut watched)?;
        let state = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut watcher = watcher;
            while let Some(paths) = events.recv().await {
                let mut changed = BTreeSet::new();
                note(&map, paths, &mut changed);
                if changed.is_empty() {
                    continue;
                }
                // Debounce: wait for the burst to end.
                let deadline = tokio::time::Instant::now() + MAX_DELAY;
                loop {
                    let quiet = tokio::time::sleep(QUIET);
                    tokio::select! {
                        more = events.recv() => match more {
                            Some(paths) => note(&map, paths, &mut changed),
                            None => return,
                        },
                        () = quiet => break,
                        () = tokio::time::sleep_until(deadline) => break,
                    }
                }
                for name in &changed {
                    tracing::info!(target: "custody::serve::reload", plugin = name, "watch: its files changed");
                    // A refusal is logged by `reload`; the old version serves on.
                    let _ = state.reload(name).await;
                }
                // A manifest may name other modules now.
                map = watch_map(&state);
                if let Err(e) = watch_dirs(&mut watcher, &map, &mut watched) {
                    tracing::warn!(target: "custody::serve::reload", "watch: {e}");
                }
            }
        });
        Ok(Some(PluginWatcher { task }))
    }
}
