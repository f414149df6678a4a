use samld_client::browser::{caught_saml_post, idp_cookies};
use serde_json::{Value, json};

/// What samlctl reads from the browser during `samlctl login --browser`: the paused POST to
/// AWS (its body is whatever the page posted, so any web content controls it) and the
/// profile's cookies (set by pages too). Seeds: a real SAML post and a getCookies answer.
pub fn browser_post(data: &[u8]) {
    // The bytes as the form body of a POST to the real sign-in host...
    let body = String::from_utf8_lossy(data);
    let params = json!({"request": {
        "url": "https://signin.aws.amazon.com/saml",
        "method": "POST",
        "postData": body,
    }});
    if let Some(saml) = caught_saml_post(&params) {
        assert!(!saml.is_empty());
    }
    // ... and as whole DevTools messages.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        if let Some(saml) = caught_saml_post(&value) {
            assert!(!saml.is_empty());
        }
        let cookies = idp_cookies(&value["cookies"]);
        assert!(cookies.len() <= 300);
        for cookie in &cookies {
            // Never one of AWS's own.
            let host = cookie.domain.trim_start_matches('.');
            assert!(!samld_config::Partition::is_aws_web_host(host), "{host}");
        }
    }
}
