//! Word lists the world is built from: names, products, and the phrase fragments
//! reviews and social posts are composed of. All ASCII, with no quotes or
//! backslashes, so they can be written into JSON as they are.

use crate::rng::Rng;

pub const FIRST_NAMES: &[&str] = &[
    "Camille", "Louis", "Lea", "Gabriel", "Chloe", "Hugo", "Manon", "Arthur", "Ines", "Jules", "Sarah", "Adam", "Emma",
    "Raphael", "Jade", "Lucas", "Alice", "Nathan", "Zoe", "Leo", "Anna", "Ethan", "Lina", "Noah", "Rose", "Paul",
    "Juliette", "Tom", "Clara", "Victor", "Margaux", "Yanis", "Eva", "Samuel", "Nina", "Theo", "Lucie", "Mohamed",
    "Amira", "Oliver", "Priya", "Kenji", "Sofia", "Mateo", "Aisha", "Lars", "Ingrid", "Tomasz", "Olga", "Fatou",
    "Diego", "Mei", "Arjun", "Hannah", "Marco", "Giulia", "Sean", "Niamh", "Pieter", "Sanne",
];

pub const LAST_NAMES: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "Andre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "Francois",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guerin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clement",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Masson",
    "Smith",
    "Kowalski",
    "Nguyen",
    "Haddad",
    "Diallo",
    "Rossi",
    "Jansen",
    "Okafor",
    "Tanaka",
    "Silva",
];

pub const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "post.example",
];

/// (time zone, locale, weight) of the customers.
pub const ZONES: &[(&str, &str)] = &[
    ("Europe/Paris", "fr-FR"),
    ("Europe/Paris", "fr-FR"),
    ("Europe/Paris", "fr-FR"),
    ("Europe/Paris", "fr-FR"),
    ("Europe/Paris", "en-GB"),
    ("Europe/Brussels", "fr-BE"),
    ("Europe/London", "en-GB"),
    ("Europe/Berlin", "de-DE"),
    ("Europe/Madrid", "es-ES"),
    ("America/New_York", "en-US"),
];

/// A product family: the SKU stem, a search query, the price range in cents, variants.
pub struct Family {
    pub stem: &'static str,
    pub query: &'static str,
    pub price: i64,
    pub variants: &'static [&'static str],
    pub tyre: bool,
}

/// Every SKU's name, `stem-variant`, in catalogue order.
pub fn sku_names() -> impl Iterator<Item = String> {
    FAMILIES
        .iter()
        .flat_map(|f| f.variants.iter().map(move |variant| format!("{}-{variant}", f.stem)))
}

pub const FAMILIES: &[Family] = &[
    Family {
        stem: "tyre-roadgrip",
        query: "summer tyres",
        price: 8_900,
        variants: &["195-65-r15", "205-55-r16", "225-45-r17"],
        tyre: true,
    },
    Family {
        stem: "tyre-allseason",
        query: "all season tyres",
        price: 10_400,
        variants: &["195-65-r15", "205-55-r16", "225-45-r17"],
        tyre: true,
    },
    Family {
        stem: "tyre-winterpro",
        query: "winter tyres",
        price: 11_900,
        variants: &["195-65-r15", "205-55-r16", "225-45-r17"],
        tyre: true,
    },
    Family {
        stem: "kettle",
        query: "electric kettle",
        price: 3_999,
        variants: &["steel", "white", "black"],
        tyre: false,
    },
    Family {
        stem: "desk-lamp",
        query: "led desk lamp",
        price: 2_999,
        variants: &["oak", "black", "white"],
        tyre: false,
    },
    Family {
        stem: "drill",
        query: "cordless drill",
        price: 8_999,
        variants: &["12v", "18v", "18v-kit"],
        tyre: false,
    },
    Family {
        stem: "vacuum",
        query: "cordless vacuum",
        price: 19_900,
        variants: &["compact", "pro", "pet"],
        tyre: false,
    },
    Family {
        stem: "grinder",
        query: "coffee grinder",
        price: 5_499,
        variants: &["burr", "blade", "manual"],
        tyre: false,
    },
    Family {
        stem: "headphones",
        query: "noise cancelling headphones",
        price: 14_900,
        variants: &["black", "silver", "blue"],
        tyre: false,
    },
    Family {
        stem: "toaster",
        query: "toaster",
        price: 3_499,
        variants: &["2-slot", "4-slot", "retro"],
        tyre: false,
    },
    Family {
        stem: "purifier",
        query: "air purifier",
        price: 12_900,
        variants: &["small", "medium", "large"],
        tyre: false,
    },
    Family {
        stem: "bike-light",
        query: "bike lights",
        price: 2_499,
        variants: &["front", "rear", "set"],
        tyre: false,
    },
    Family {
        stem: "charger",
        query: "usb c charger",
        price: 1_999,
        variants: &["20w", "65w", "100w"],
        tyre: false,
    },
    Family {
        stem: "blender",
        query: "blender",
        price: 7_999,
        variants: &["personal", "pro", "glass"],
        tyre: false,
    },
    Family {
        stem: "car-mats",
        query: "car floor mats",
        price: 3_999,
        variants: &["rubber", "carpet", "premium"],
        tyre: false,
    },
    Family {
        stem: "wiper-blades",
        query: "wiper blades",
        price: 1_899,
        variants: &["500mm", "600mm", "set"],
        tyre: false,
    },
];

/// Pages customers browse besides product pages.
pub const PAGES: &[&str] = &[
    "/",
    "/deals",
    "/delivery-info",
    "/stores",
    "/returns",
    "/account",
    "/help/tracking",
    "/tyres/fitting",
];

pub const QUERY_SUFFIXES: &[&str] = &[
    "",
    " cheap",
    " best",
    " near me",
    " review",
    " deal",
    " fast delivery",
    " in stock",
];

pub const PAYMENT_METHODS: &[&str] = &["card", "card", "card", "paypal", "apple_pay", "gift_card"];
pub const PAYMENT_FAILURES: &[&str] = &[
    "card_declined",
    "3ds_timeout",
    "insufficient_funds",
    "expired_card",
    "network_error",
];
pub const FAIL_REASONS: &[&str] = &[
    "nobody_home",
    "no_safe_place",
    "access_code_wrong",
    "address_not_found",
    "business_closed",
];
pub const SOCIAL_NETWORKS: &[&str] = &["x", "instagram", "facebook", "tiktok", "mastodon"];
pub const REVIEW_SITES: &[&str] = &["site", "site", "trustpilot", "google"];

const GOOD_OPEN: &[&str] = &[
    "Really happy with",
    "Impressed by",
    "Great experience with",
    "Cannot fault",
    "Pleasantly surprised by",
    "Top marks for",
    "Very pleased with",
    "Smooth experience with",
];
const GOOD_DELIVERY: &[&str] = &[
    "the delivery, right inside the window",
    "the driver, friendly and on time",
    "the live map, I knew exactly when it would arrive",
    "the safe place photo, parcel exactly where I asked",
    "how fast the order arrived",
    "the tracking page, it was spot on",
    "the one hour window, they kept it",
];
const GOOD_PRODUCT: &[&str] = &[
    "the product works perfectly",
    "quality is better than expected",
    "good value for the price",
    "does exactly what it says",
    "solid build and easy to set up",
];
const GOOD_CLOSE: &[&str] = &[
    "Will order again.",
    "Recommended.",
    "Five stars from me.",
    "Thanks team!",
    "Keep it up.",
    "",
];

const BAD_OPEN: &[&str] = &[
    "Really disappointed with",
    "Fed up with",
    "Not impressed by",
    "Frustrated with",
    "Still waiting on",
    "Worst experience with",
    "Let down by",
    "Annoyed by",
];
const BAD_LATE: &[&str] = &[
    "the delivery, the window came and went",
    "a driver who never showed up in the slot",
    "waiting in all day for nothing",
    "the tracking page that said out for delivery for hours",
    "a parcel that arrived hours late",
];
const BAD_LOST: &[&str] = &[
    "a parcel that simply vanished",
    "an order marked lost after a week of waiting",
    "my package, lost somewhere in the network",
];
const BAD_FAILED: &[&str] = &[
    "a missed delivery card when I was home all day",
    "a failed delivery and a new slot I did not ask for",
    "being told nobody was home when I was",
];
const BAD_STOCK: &[&str] = &[
    "the website saying in stock when the shelf was empty",
    "a wasted trip to the store for an item they did not have",
    "stock levels online that are pure fiction",
];
const BAD_PRODUCT: &[&str] = &[
    "a product that stopped working within a week",
    "poor build quality, nothing like the photos",
    "a faulty unit straight out of the box",
];
const BAD_SERVICE: &[&str] = &[
    "a callback that never came",
    "being put on hold and transferred twice",
    "a refund promised days ago and still nothing",
    "support that does not call back when they say they will",
];
const BAD_CLOSE: &[&str] = &[
    "Never again.",
    "Sort it out.",
    "One star.",
    "Expected better.",
    "Thinking twice before ordering again.",
    "",
];

/// What a customer's text is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Delivery,
    Product,
    Late,
    Lost,
    Failed,
    Stock,
    Service,
    /// A product that let the customer down.
    Defect,
}

/// Writes a short post or review about `topic` into `out`, positive or negative,
/// naming `brand` (a carrier or the shop) now and then.
pub fn compose(rng: &mut Rng, topic: Topic, brand: &str, out: &mut String) {
    out.clear();
    let good = matches!(topic, Topic::Delivery | Topic::Product);
    let (open, body, close) = match topic {
        Topic::Delivery => (GOOD_OPEN, GOOD_DELIVERY, GOOD_CLOSE),
        Topic::Product => (GOOD_OPEN, GOOD_PRODUCT, GOOD_CLOSE),
        Topic::Late => (BAD_OPEN, BAD_LATE, BAD_CLOSE),
        Topic::Lost => (BAD_OPEN, BAD_LOST, BAD_CLOSE),
        Topic::Failed => (BAD_OPEN, BAD_FAILED, BAD_CLOSE),
        Topic::Stock => (BAD_OPEN, BAD_STOCK, BAD_CLOSE),
        Topic::Service => (BAD_OPEN, BAD_SERVICE, BAD_CLOSE),
        Topic::Defect => (BAD_OPEN, BAD_PRODUCT, BAD_CLOSE),
    };
    out.push_str(rng.pick(open));
    out.push(' ');
    out.push_str(rng.pick(body));
    if !brand.is_empty() && rng.chance(0.5) {
        out.push_str(if good { ", thanks " } else { ", come on " });
        out.push_str(brand);
    }
    out.push('.');
    let close = rng.pick(close);
    if !close.is_empty() {
        out.push(' ');
        out.push_str(close);
    }
}
