//! `/ui/inventory`: inventory truthfulness per store and SKU, worst phantom stock
//! first, with the evidence and the function that owns the fix; the same
//! computation as `GET /api/v1/inventory`.

use std::fmt::Write;

use troth_store::Store;

use super::html::{count, esc, page};
use super::journey::{Days, date, range_form};
use crate::ApiError;

/// Rows shown; the API lists every pair.
const SHOWN: usize = 50;

pub async fn inventory<S: Store>(store: &S, params: &[(String, String)]) -> Result<Option<String>, ApiError> {
    let days = Days::from_params(store, params).await?;
    let shelves = crate::inventory::shelves(store, Some(days.first), Some(days.last + 1)).await?;
    let wrong: Vec<_> = shelves.iter().filter(|s| !s.owner.is_empty()).collect();
    let mut body = range_form("/ui/inventory", &days);
    let _ = write!(
        body,
        r#"<p class="muted">{} to {} (UTC days). <a href="/api/v1/inventory?from={}T00:00:00Z&amp;to={}T00:00:00Z">JSON</a></p>
<details class="explain"><summary>What the figures mean</summary><dl>
<dt>Phantom stock</dt><dd>stock the books hold and the shelf does not: the site says in stock, the customer comes, the shelf is empty.</dd>
<dt>Customers misled</dt><dd>the site's in-stock claims for the SKU at the store, times the share of store visits that found nothing: the phantom-stock score.</dd>
<dt>Units missing</dt><dd>units the counts found fewer than the books (negative count corrections).</dd>
<dt>Suspect receipts</dt><dd>receipts whose units the next count found missing: received on paper, never on the shelf.</dd>
<dt>Owner of the fix</dt><dd>store operations when receipts never reached the shelf (receiving; purchasing too if the supplier short-shipped) or when visitors find nothing while the counts agree (shelving); inventory when counts find units missing with no receipt to blame.</dd>
</dl></details>"#,
        date(days.first),
        date(days.last),
        date(days.first),
        date(days.last + 1),
    );
    if wrong.is_empty() {
        let _ = write!(
            body,
            "<p id=\"none\">Nothing wrong found: {} store and SKU pairs, no visitor left empty-handed, no count short of the books.</p>",
            count(shelves.len() as i64)
        );
        return Ok(Some(page("Inventory truthfulness", None, &body)));
    }
    let _ = write!(
        body,
        r#"<p>{} of {} store and SKU pairs show something wrong{}.</p><div class="scroll"><table id="shelves" class="wide"><thead><tr><th>store</th><th>SKU</th><th class="num">customers misled</th><th class="num">found nothing</th><th class="num">units missing</th><th class="num">suspect receipts</th><th>owner of the fix</th><th>evidence</th></tr></thead><tbody>"#,
        count(wrong.len() as i64),
        count(shelves.len() as i64),
        if wrong.len() > SHOWN {
            format!("; the worst {SHOWN} below")
        } else {
            String::new()
        },
    );
    for s in wrong.iter().take(SHOWN) {
        let _ = write!(
            body,
            r#"<tr><td><code>{}</code></td><td><code>{}</code></td><td class="num">{:.1}</td><td class="num">{} of {}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="evidence">{}</td></tr>"#,
            esc(&s.store),
            esc(&s.sku),
            s.phantom_score,
            count(s.found_nothing as i64),
            count(s.visits as i64),
            count(s.units_missing),
            count(s.suspect_receipts.len() as i64),
            esc(owner_name(&s.owner)),
            esc(&s.evidence.join("; ")),
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(Some(page("Inventory truthfulness", None, &body)))
}

fn owner_name(owner: &str) -> &str {
    match owner {
        "store_operations" => "Store operations",
        "inventory" => "Inventory",
        other => other,
    }
}
