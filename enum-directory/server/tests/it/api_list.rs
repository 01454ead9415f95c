//! `GET /v1/numbers`: the provider-authenticated listing for contact discovery — auth required, every
//! provider's numbers, paged by cursor, deleted numbers absent.

use serde_json::{Value, json};

use crate::harness::Directory;

#[tokio::test]
async fn listing_is_authenticated_paged_and_omits_deleted_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let a = d.add_provider("a", &["+44"]);
    let b = d.add_provider("b", &["+49"]);
    let body = |user: &str| json!({"services": [{"type": "matrix", "uri": format!("matrix:u/{user}:hs.test")}]});
    let uk: Vec<String> = (1..=5).map(|i| format!("+44207946000{i}")).collect();
    for (i, n) in uk.iter().enumerate() {
        let r = d.http.put(d.url(&format!("/v1/numbers/{n}"))).bearer_auth(&a).json(&body(&format!("u{i}")));
        assert_eq!(r.send().await.unwrap().status().as_u16(), 200);
    }
    let de = "+4915112345678";
    let r = d.http.put(d.url(&format!("/v1/numbers/{de}"))).bearer_auth(&b).json(&body("bob")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = d.http.delete(d.url(&format!("/v1/numbers/{}", uk[2]))).bearer_auth(&a).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // No token, a wrong token: 401.
    let r = d.http.get(d.url("/v1/numbers")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = d.http.get(d.url("/v1/numbers")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Provider b walks everything two at a time, its own and a's numbers, in order.
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = d.url("/v1/numbers?limit=2");
        if let Some(c) = &after {
            url.push_str(&format!("&after={}", c.replace('+', "%2B")));
        }
        let r = d.http.get(url).bearer_auth(&b).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let page: Value = r.json().await.unwrap();
        pages += 1;
        for n in page["numbers"].as_array().unwrap() {
            seen.push((n["number"].as_str().unwrap().to_owned(), n["version"].as_i64().unwrap()));
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the listing must end");
    }
    let numbers: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(numbers, [uk[0].as_str(), &uk[1], &uk[3], &uk[4], de], "sorted, deleted one absent");
    assert_eq!(seen.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [1, 2, 4, 5, 6], "versions of the last change");
    assert_eq!(pages, 3);

    // A bare-digit cursor (an unencoded `+` arrives as a space) reads as the number.
    let page: Value = d
        .http
        .get(format!("{}?after=+442079460004&limit=1000", d.url("/v1/numbers")))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page, json!({"numbers": [{"number": uk[4], "version": 5}, {"number": de, "version": 6}], "next": null}));

    // Bad limits and cursors are typed 400s.
    for (q, code) in [
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
        ("limit=x", "invalid_query"),
        ("after=%2Bzz", "invalid_number"),
        ("sort=up", "invalid_query"),
    ] {
        let r = d.http.get(format!("{}?{q}", d.url("/v1/numbers"))).bearer_auth(&a).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], code, "{q}");
    }
}
