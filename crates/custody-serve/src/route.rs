//! Routes as WAGI and Spin write them: `/hello` is that path only,
//! `/hello/...` is the path and every path beneath it, `/...` is every
//! path. Of the routes that match a request, the longest wins, and an
//! exact route wins over a wildcard of the same prefix. A module's
//! `_routes` export adds sub-routes, each beneath the plugin's route.

use std::fmt;

/// One route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// As written (`X_MATCHED_ROUTE`).
    written: String,
    /// The path without `/...` (`""` for `/...`).
    prefix: String,
    wildcard: bool,
}

/// What a request's path is, seen through the route that matched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// CGI's `SCRIPT_NAME`: the route without `/...`.
    pub script_name: String,
    /// The rest of the path, still percent-encoded (`X_RAW_PATH_INFO`).
    pub raw_path_info: String,
}

impl Route {
    /// Reads a route.
    ///
    /// # Errors
    /// A message when it does not start with `/`, has a query or fragment,
    /// or uses `...` anywhere but as the whole last segment.
    pub fn parse(text: &str) -> Result<Route, String> {
        if !text.starts_with('/') {
            return Err(format!("{text:?} must start with '/'"));
        }
        if text.contains(['?', '#']) || text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "{text:?} must be a path without query, fragment or spaces"
            ));
        }
        let (prefix, wildcard) = match text.strip_suffix("/...") {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if prefix.contains("...") {
            return Err(format!("{text:?}: `...` may only end a route, as `/...`"));
        }
        Ok(Route {
            written: text.to_string(),
            prefix: prefix.to_string(),
            wildcard,
        })
    }

    /// A sub-route of `_routes` beneath this route: `/hello/...` and
    /// `/bye` give `/hello/bye`.
    ///
    /// # Errors
    /// As [`Route::parse`] for the joined route.
    pub fn join(&self, sub: &str) -> Result<Route, String> {
        Route::parse(&format!("{}{sub}", self.prefix))
    }

    /// The route as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// Whether `path` (the request's, still percent-encoded) is this
    /// route's, and how it splits.
    pub fn matches(&self, path: &str) -> Option<RouteMatch> {
        let rest = self.rest_of(path)?;
        Some(RouteMatch {
            script_name: self.prefix.clone(),
            raw_path_info: rest.to_string(),
        })
    }

    /// Whether `path` is this route's: the rest of it after the route's
    /// prefix if so (nothing copied: routing compares routes with this, and
    /// builds the [`RouteMatch`] of the one chosen only).
    pub fn rest_of<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.wildcard {
            let rest = path.strip_prefix(self.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some(rest)
        } else {
            (path == self.prefix).then_some("")
        }
    }

    /// How specific the route is: compared between routes that match the
    /// same path, the greater wins.
    pub fn specificity(&self) -> (usize, bool) {
        (self.prefix.len(), !self.wildcard)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// Reads the output of a module's `_routes` export: one `ROUTE EXPORT`
/// per line (blank lines skipped), each route beneath `base`.
///
/// # Errors
/// A message naming the line that is not `ROUTE EXPORT` or whose route
/// does not parse.
pub fn parse_sub_routes(base: &Route, output: &str) -> Result<Vec<(Route, String)>, String> {
    let mut routes = Vec::new();
    for (n, line) in output.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(sub), Some(export), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "_routes line {}: {line:?} is not `ROUTE EXPORT`",
                n + 1
            ));
        };
        if !sub.starts_with('/') {
            return Err(format!(
                "_routes line {}: the route {sub:?} must start with '/'",
                n + 1
            ));
        }
        let route = base
            .join(sub)
            .map_err(|e| format!("_routes line {}: {e}", n + 1))?;
        routes.push((route, export.to_string()));
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(route: &str, path: &str) -> Option<(String, String)> {
        let m = Route::parse(route).unwrap().matches(path)?;
        Some((m.script_name, m.raw_path_info))
    }

    #[test]
    fn exact_and_wildcard_routes_split_the_path_as_wagi_does() {
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(split("/hello", "/hello"), s("/hello", ""));
        assert_eq!(split("/hello", "/hello/x"), None);
        assert_eq!(split("/hello/...", "/hello"), s("/hello", ""));
        assert_eq!(
            split("/hello/...", "/hello/a%20b/c"),
            s("/hello", "/a%20b/c")
        );
        assert_eq!(split("/hello/...", "/helloworld"), None);
        assert_eq!(split("/...", "/anything/at/all"), s("", "/anything/at/all"));
        assert_eq!(split("/", "/"), s("/", ""));
    }

    #[test]
    fn bad_routes_are_refused() {
        for bad in ["hello", "/a?b", "/a/.../b", "/a b", "/a..."] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_beats_a_wildcard_of_the_same_prefix() {
        let exact = Route::parse("/path").unwrap();
        let wild = Route::parse("/path/...").unwrap();
        assert!(exact.specificity() > wild.specificity());
        assert!(Route::parse("/path/sub/...").unwrap().specificity() > exact.specificity());
    }

    #[test]
    fn sub_routes_are_joined_beneath_the_plugin_route() {
        let base = Route::parse("/app/...").unwrap();
        let routes = parse_sub_routes(&base, "/a one\n\n/b/... two\n").unwrap();
        let got: Vec<_> = routes
            .iter()
            .map(|(r, e)| (r.as_str(), e.as_str()))
            .collect();
        assert_eq!(got, [("/app/a", "one"), ("/app/b/...", "two")]);
        assert!(parse_sub_routes(&base, "/a\n").is_err());
        assert!(parse_sub_routes(&base, "a b\n").is_err());
    }
}
