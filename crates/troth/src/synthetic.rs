//! Deterministic synthetic catalogue events: the benchmarks' load until the
//! retailer simulator takes over. Same seed, same bytes.

/// SplitMix64: tiny, fast and good enough to spread synthetic values.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `count` events over `count / 20` customers, one second apart from 2026-11-01.
pub fn events(count: u64, seed: u64) -> impl Iterator<Item = String> {
    let mut rng = Rng::new(seed);
    let customers = (count / 20).max(1);
    const START: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z
    (0..count).map(move |i| {
        let c = rng.below(customers);
        let time = troth_core::Timestamp::from_secs(START + i as i64);
        let who = if rng.below(10) == 0 {
            format!(r#"{{"id":"u{c}","email":"u{c}@example.org"}}"#)
        } else {
            format!(r#"{{"id":"u{c}"}}"#)
        };
        let head = format!(r#"{{"id":"b{i}","time":"{time}","source":"bench","#);
        match rng.below(100) {
            0..40 => format!(r#"{head}"type":"page.viewed","channel":"web","customer":{who},"data":{{"page":"/p/{}"}}}}"#, rng.below(500)),
            40..55 => format!(r#"{head}"type":"search.performed","channel":"web","customer":{who},"data":{{"query":"tyres {}"}}}}"#, rng.below(90)),
            55..65 => {
                let qty = 1 + rng.below(4);
                format!(
                    r#"{head}"type":"order.placed","channel":"web","customer":{who},"subject":"order:o{i}","data":{{"order":"o{i}","items":[{{"sku":"t-{}","qty":{qty},"price":8900}}],"total":{},"currency":"EUR","delivery":"home"}}}}"#,
                    rng.below(300),
                    qty * 8900
                )
            }
            65..78 => format!(
                r#"{head}"type":"tracking.viewed","channel":"web","customer":{who},"subject":"shipment:s{}","data":{{"shipment":"s{}"}}}}"#,
                i / 7,
                i / 7
            ),
            78..88 => {
                let d = rng.below(50);
                let lat = 48.80 + rng.below(10_000) as f64 / 100_000.0;
                let lon = 2.25 + rng.below(10_000) as f64 / 100_000.0;
                format!(r#"{head}"type":"courier.position","channel":"courier","subject":"driver:d{d}","data":{{"lat":{lat:.5},"lon":{lon:.5},"speed_kmh":{}}}}}"#, rng.below(60))
            }
            88..93 => format!(
                r#"{head}"type":"survey.answered","channel":"email","customer":{who},"data":{{"survey":"post-delivery","nps":{}}}}}"#,
                rng.below(11)
            ),
            _ => format!(
                r#"{head}"type":"customer.identified","channel":"app","customer":{{"id":"u{c}"}},"data":{{"traits":{{"name":"Customer {c}","timezone":"Europe/Paris"}},"emails":["u{c}@example.org"]}}}}"#
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_seed_gives_the_same_events_and_all_validate() {
        let a: Vec<String> = super::events(2_000, 7).collect();
        let b: Vec<String> = super::events(2_000, 7).collect();
        assert_eq!(a, b);
        for line in &a {
            if let Err(r) = troth_core::validate_event(line) {
                panic!("{line}: {}", r.error);
            }
        }
    }
}
