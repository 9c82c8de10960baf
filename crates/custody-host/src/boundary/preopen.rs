//! Pre-opened directories: the only filesystem a domain can reach, and the
//! split of a guest path (`NAME/rel/path`) into a pre-open and a path
//! beneath it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::errno::AbiError;

/// A pre-opened directory (an `O_PATH` fd: it grants lookups beneath it and
/// nothing else).
pub(crate) struct Preopen {
    pub(crate) name: String,
    pub(crate) dir: OwnedFd,
}

/// A domain's pre-opens, in the order the host gave them.
#[derive(Default)]
pub struct Preopens(Vec<Preopen>);

impl Preopens {
    pub(crate) fn new(preopens: Vec<Preopen>) -> Self {
        Preopens(preopens)
    }

    /// The pre-open at `index` (its order among the domain's pre-opens):
    /// its name and directory.
    pub fn get(&self, index: usize) -> Option<(&str, BorrowedFd<'_>)> {
        self.0.get(index).map(|p| (p.name.as_str(), p.dir.as_fd()))
    }

    /// Splits `NAME/rel/path` and finds the pre-open `NAME`: its directory
    /// and the path beneath it (`.` for the directory itself). An unknown
    /// name or an absolute remainder is `E_DENIED`; the kernel confines the
    /// rest (`openat2` with `RESOLVE_BENEATH`).
    pub(crate) fn resolve<'p>(&self, path: &'p str) -> Result<(BorrowedFd<'_>, &'p str), AbiError> {
        let (name, relative) = path.split_once('/').unwrap_or((path, ""));
        let relative = if relative.is_empty() { "." } else { relative };
        if relative.starts_with('/') {
            return Err(AbiError::Denied);
        }
        let preopen = self
            .0
            .iter()
            .find(|p| p.name == name)
            .ok_or(AbiError::Denied)?;
        Ok((preopen.dir.as_fd(), relative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_name_a_preopen_first() {
        let dir = crate::sys::open_dir(std::path::Path::new("/tmp")).unwrap();
        let preopens = Preopens::new(vec![Preopen {
            name: "data".into(),
            dir,
        }]);
        assert_eq!(preopens.resolve("data/a/b").unwrap().1, "a/b");
        assert_eq!(preopens.resolve("data").unwrap().1, ".");
        assert_eq!(preopens.resolve("data/").unwrap().1, ".");
        assert_eq!(preopens.resolve("data//etc").err(), Some(AbiError::Denied));
        assert_eq!(preopens.resolve("other/x").err(), Some(AbiError::Denied));
        assert_eq!(preopens.resolve("/data/x").err(), Some(AbiError::Denied));
    }
}
