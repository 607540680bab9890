//! The `--json` form: one object for one item, `{"kind":"chain",
//! "certificates":[...]}` for several certificates, `{"kind":"bundle",
//! "items":[...]}` for any other mix. Fields keep their declared order.

use serde::Serialize;

use super::{Item, Report};
use crate::error::{Error, Result};

#[derive(Serialize)]
#[serde(untagged)]
enum Document<'a> {
    One(&'a Item),
    Chain {
        kind: &'static str,
        certificates: &'a [Item],
    },
    Bundle {
        kind: &'static str,
        items: &'a [Item],
    },
}

pub fn to_string(report: &Report) -> Result<String> {
    let doc = match report.items.as_slice() {
        [one] => Document::One(one),
        items if items.iter().all(|i| matches!(i, Item::Certificate(_))) => Document::Chain {
            kind: "chain",
            certificates: items,
        },
        items => Document::Bundle {
            kind: "bundle",
            items,
        },
    };
    // Only a serializer bug could fail here: the report holds plain data.
    serde_json::to_string_pretty(&doc)
        .map(crate::escape::json)
        .map_err(|e| Error::crypto("cannot encode JSON", e))
}
