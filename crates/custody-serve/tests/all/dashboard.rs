//! The dashboard's door (`GET /admin/`): the page as is without a token;
//! with one, a 401 page until `?token=` sets the read-only cookie (303 to
//! `/admin/`), which then admits the page and the JSON reads but never a
//! mutating call. (What the page draws is tested in a real browser:
//! `crates/custody/tests/all/dashboard.rs`.)

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::admin::{TOKEN, server};
use crate::support::*;

async fn get_with(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Answer {
    send(client, Method::GET, url, headers, Bytes::new()).await
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    (answer.headers.get(name))
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// The page: HTML, never cached, its own content security policy, and
/// the script that reads the JSON endpoints.
fn assert_is_the_page(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(header(answer, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(answer, "cache-control"), "no-store");
    assert!(
        header(answer, "content-security-policy").contains("connect-src 'self'"),
        "{:?}",
        answer.headers
    );
    assert!(
        answer.body.contains("<title>custody admin</title>")
            && answer.body.contains("getJson(\"/admin/requests\")"),
        "{}",
        answer.body
    );
}

#[test]
fn without_a_token_the_page_is_served_and_admin_redirects_to_it() {
    serial_runtime(async {
        let server = server(None).await;
        let client = client();
        assert_is_the_page(&get(&client, &server.admin_url("/admin/")).await);
        let bare = get(&client, &server.admin_url("/admin")).await;
        assert_eq!(bare.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&bare, "location"), "/admin/");
        let post = send(
            &client,
            Method::POST,
            &server.admin_url("/admin/"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED, "{}", post.body);
    });
}

#[test]
fn with_a_token_the_query_sets_a_read_only_cookie() {
    serial_runtime(async {
        let server = server(Some(TOKEN)).await;
        let client = client();
        let page = server.admin_url("/admin/");
        let refused = get(&client, &page).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(
            refused.body.contains("/admin/?token=TOKEN"),
            "{}",
            refused.body
        );
        let wrong = get(&client, &format!("{page}?token=not-it")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(wrong.headers.get("set-cookie").is_none());
        // `/admin?token=` keeps the query on its way to `/admin/`.
        let bare = get(&client, &server.admin_url(&format!("/admin?token={TOKEN}"))).await;
        assert_eq!(header(&bare, "location"), format!("/admin/?token={TOKEN}"));

        let opened = get(&client, &format!("{page}?x=1&token={TOKEN}")).await;
        assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
        assert_eq!(header(&opened, "location"), "/admin/");
        let set = header(&opened, "set-cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
            "{set}"
        );
        assert!(!set.contains(TOKEN), "the cookie is not the token: {set}");
        let cookie = set.split(';').next().unwrap().to_string();
        let with_cookie = [("cookie", cookie.as_str())];

        assert_is_the_page(&get_with(&client, &page, &with_cookie).await);
        for read in [
            "/admin/plugins",
            "/admin/domains",
            "/admin/requests",
            "/metrics",
        ] {
            let answer = get_with(&client, &server.admin_url(read), &with_cookie).await;
            assert_eq!(answer.status, StatusCode::OK, "{read}: {}", answer.body);
        }
        let mutate = send(
            &client,
            Method::POST,
            &server.admin_url("/admin/plugins/hello/reload"),
            &with_cookie,
            Bytes::new(),
        )
        .await;
        assert_eq!(mutate.status, StatusCode::UNAUTHORIZED, "{}", mutate.body);
        // The bearer header still opens the page, as every endpoint.
        let bearer = format!("Bearer {TOKEN}");
        assert_is_the_page(&get_with(&client, &page, &[("authorization", &bearer)]).await);
    });
}
