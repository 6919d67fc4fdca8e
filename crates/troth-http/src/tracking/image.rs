//! Checking and cleaning a customer's photo: JPEG or PNG by their magic bytes,
//! cut at the end of the image, with the metadata that can locate or identify
//! someone (EXIF, XMP, comments, text chunks) taken out and what the pixels need to
//! look right (colour profile, orientation) kept. The pixels are not decoded or touched.

/// The kinds of photo accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
}

impl Kind {
    pub fn of(bytes: &[u8]) -> Option<Kind> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Kind::Jpeg)
        } else if bytes.starts_with(PNG_SIGNATURE) {
            Some(Kind::Png)
        } else {
            None
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpg",
            Kind::Png => "png",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the photo must be a JPEG or PNG image")]
    NotAnImage,
    #[error("the photo is damaged or cut short")]
    Malformed,
}

const PNG_SIGNATURE: &[u8] = &[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];

/// The photo without its metadata, and its kind.
pub fn strip(bytes: &[u8]) -> Result<(Kind, Vec<u8>), ImageError> {
    let kind = Kind::of(bytes).ok_or(ImageError::NotAnImage)?;
    let clean = match kind {
        Kind::Jpeg => strip_jpeg(bytes)?,
        Kind::Png => strip_png(bytes)?,
    };
    Ok((kind, clean))
}

/// Copies a JPEG up to its end-of-image marker, segment by segment. Kept: the
/// segments that make the pixels (tables, frame, scans and their entropy-coded
/// data), the colour profile (APP2 `ICC_PROFILE`) and Adobe's APP14 (how CMYK and
/// YCCK are to be read). The orientation is kept as a new, minimal EXIF segment
/// holding that one tag. Dropped: every other APP segment (EXIF with its GPS and
/// camera serials, XMP, JFIF thumbnails, Photoshop's IPTC, MPF's pointer to a second
/// image) and comments — and anything after the end of the image (a second image
/// with its own GPS, a motion photo's video, an HTML polyglot's tail).
fn strip_jpeg(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]);
    let mut orientation = None;
    let mut at = 2;
    loop {
        if bytes.get(at) != Some(&0xFF) {
            return Err(ImageError::Malformed);
        }
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let marker = *bytes.get(at + 1).ok_or(ImageError::Malformed)?;
        match marker {
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&bytes[at..at + 2]);
                at += 2;
                continue;
            }
            0xD9 => {
                out.extend_from_slice(&bytes[at..at + 2]);
                return Ok(with_orientation(out, orientation));
            }
            _ => {}
        }
        let length = bytes
            .get(at + 2..at + 4)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .filter(|&l| l >= 2)
            .ok_or(ImageError::Malformed)?;
        let end = at + 2 + length;
        if end > bytes.len() {
            return Err(ImageError::Malformed);
        }
        let payload = &bytes[at + 4..end];
        let kept = match marker {
            0xE1 if payload.starts_with(b"Exif\0\0") => {
                orientation = orientation.or_else(|| exif_orientation(&payload[6..]));
                false
            }
            0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
            0xEE => payload.starts_with(b"Adobe"),
            0xE0..=0xEF | 0xFE => false,
            _ => true,
        };
        if kept {
            out.extend_from_slice(&bytes[at..end]);
        }
        at = end;
        if marker == 0xDA {
            // Start of scan: entropy-coded data up to the next marker that is not a
            // stuffed 0xFF00 or a restart (progressive images have several scans).
            let data_end = entropy_end(bytes, at).ok_or(ImageError::Malformed)?;
            out.extend_from_slice(&bytes[at..data_end]);
            at = data_end;
        }
    }
}

/// Where a scan's entropy-coded data starting at `from` ends: at the first marker.
fn entropy_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let ff = at + bytes.get(at..)?.iter().position(|&b| b == 0xFF)?;
        match bytes.get(ff + 1)? {
            0x00 | 0xD0..=0xD7 => at = ff + 2,
            _ => return Some(ff),
        }
    }
}

/// The Orientation tag (0x0112) of an EXIF block's first IFD, when it is 1–8.
fn exif_orientation(tiff: &[u8]) -> Option<u16> {
    let big_endian = match tiff.get(..4)? {
        b"MM\0*" => true,
        b"II*\0" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        let b = tiff.get(at..at + 2)?;
        Some(if big_endian {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| {
        let b = tiff.get(at..at + 4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = u16_at(ifd)?;
    (0..usize::from(entries)).find_map(|i| {
        let entry = ifd.checked_add(2 + 12 * i)?;
        // Tag 0x0112, type SHORT (3), one value, stored in the entry itself.
        (u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3)
            .then(|| u16_at(entry + 8))
            .flatten()
            .filter(|o| (1..=8).contains(o))
    })
}

/// Puts back the orientation, the one EXIF tag a photo needs to be shown upright,
/// as an EXIF segment of its own right after the start-of-image marker.
fn with_orientation(jpeg: Vec<u8>, orientation: Option<u16>) -> Vec<u8> {
    let Some(orientation) = orientation.filter(|&o| o != 1) else {
        return jpeg;
    };
    let mut exif = b"Exif\0\0MM\0*\0\0\0\x08".to_vec();
    exif.extend_from_slice(&1u16.to_be_bytes()); // one entry
    exif.extend_from_slice(&0x0112u16.to_be_bytes());
    exif.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    exif.extend_from_slice(&1u32.to_be_bytes());
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0]);
    exif.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut out = Vec::with_capacity(jpeg.len() + exif.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Ancillary PNG chunks kept: they change how the pixels look, and say nothing about
/// who took the photo, where or when. Every other ancillary chunk (tEXt, zTXt,
/// iTXt, eXIf, tIME, private chunks) is dropped; critical chunks are all kept.
const PNG_KEPT: &[&[u8; 4]] = &[b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"bKGD", b"pHYs"];

fn strip_png(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(PNG_SIGNATURE);
    let mut at = PNG_SIGNATURE.len();
    loop {
        let header = bytes.get(at..at + 8).ok_or(ImageError::Malformed)?;
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        let end = at
            .checked_add(12)
            .and_then(|n| n.checked_add(length))
            .filter(|&e| e <= bytes.len())
            .ok_or(ImageError::Malformed)?;
        // Bit 5 of the first byte: lowercase means ancillary.
        let critical = kind[0] & 0x20 == 0;
        if critical || PNG_KEPT.contains(&&kind) {
            out.extend_from_slice(&bytes[at..end]);
        }
        if &kind == b"IEND" {
            return Ok(out);
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// A JPEG's structure: SOI, APP0, APP1 (EXIF with a GPS tag), COM, DQT, SOS, data, EOI.
    fn jpeg() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend(segment(0xE0, b"JFIF\0\x01\x01"));
        j.extend(segment(0xE1, b"Exif\0\0GPS 51.5N 0.12W"));
        j.extend(segment(0xFE, b"taken by Ann"));
        j.extend(segment(0xDB, &[0; 65]));
        j.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        j.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9]);
        j
    }

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&[0, 0, 0, 0]); // the CRC is copied, not checked
        c
    }

    fn png() -> Vec<u8> {
        let mut p = PNG_SIGNATURE.to_vec();
        p.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
        p.extend(chunk(b"tEXt", b"Author\0Ann"));
        p.extend(chunk(b"eXIf", b"MM\0*GPS"));
        p.extend(chunk(b"gAMA", &[0, 0, 177, 143]));
        p.extend(chunk(b"IDAT", &[1, 2, 3]));
        p.extend(chunk(b"iTXt", b"Location\0\0\0\0\0Home"));
        p.extend(chunk(b"IEND", &[]));
        p
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_jpeg_loses_its_app_and_comment_segments_and_keeps_the_rest() {
        let (kind, clean) = strip(&jpeg()).unwrap();
        assert_eq!(kind, Kind::Jpeg);
        let mut expected = vec![0xFF, 0xD8];
        expected.extend(segment(0xDB, &[0; 65]));
        expected.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        expected.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9]);
        assert_eq!(clean, expected);
        assert!(!contains(&clean, b"GPS") && !contains(&clean, b"Ann"));
    }

    #[test]
    fn a_png_loses_text_and_exif_chunks_and_keeps_the_rest() {
        let (kind, clean) = strip(&png()).unwrap();
        assert_eq!(kind, Kind::Png);
        let mut expected = PNG_SIGNATURE.to_vec();
        expected.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
        expected.extend(chunk(b"gAMA", &[0, 0, 177, 143]));
        expected.extend(chunk(b"IDAT", &[1, 2, 3]));
        expected.extend(chunk(b"IEND", &[]));
        assert_eq!(clean, expected);
    }

    /// EXIF (TIFF) with the given orientation and a GPS pointer, in either byte order.
    fn exif(orientation: u16, big_endian: bool) -> Vec<u8> {
        let u16b = |n: u16| if big_endian { n.to_be_bytes() } else { n.to_le_bytes() };
        let u32b = |n: u32| if big_endian { n.to_be_bytes() } else { n.to_le_bytes() };
        let mut e = b"Exif\0\0".to_vec();
        e.extend_from_slice(if big_endian { b"MM\0*" } else { b"II*\0" });
        e.extend_from_slice(&u32b(8));
        e.extend_from_slice(&u16b(2));
        // GPS IFD pointer, then Orientation.
        e.extend_from_slice(&u16b(0x8825));
        e.extend_from_slice(&u16b(4));
        e.extend_from_slice(&u32b(1));
        e.extend_from_slice(&u32b(99));
        e.extend_from_slice(&u16b(0x0112));
        e.extend_from_slice(&u16b(3));
        e.extend_from_slice(&u32b(1));
        e.extend_from_slice(&u16b(orientation));
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&u32b(0));
        e.extend_from_slice(b"GPS 51.5N 0.12W");
        e
    }

    /// A photo from a phone: EXIF with orientation and GPS, an ICC profile, MPF
    /// pointing at a second image, a progressive image in two scans, and a tail.
    fn phone_jpeg(tail: &[u8]) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend(segment(0xE1, &exif(6, false)));
        j.extend(segment(
            0xE1,
            b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>Ann's phone</x:xmpmeta>",
        ));
        j.extend(segment(0xE2, b"ICC_PROFILE\0\x01\x01profile bytes"));
        j.extend(segment(0xE2, b"MPF\0MM\0*second image at 4000"));
        j.extend(segment(0xDB, &[0; 65]));
        j.extend(segment(0xC2, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]));
        j.extend(segment(0xC4, &[0; 20]));
        j.extend(segment(0xDA, &[1, 1, 0, 0, 0, 0]));
        j.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        j.extend(segment(0xC4, &[1; 20]));
        j.extend(segment(0xDA, &[1, 1, 0, 1, 63, 0]));
        j.extend_from_slice(&[0x78, 0x9A, 0xFF, 0xD9]);
        j.extend_from_slice(tail);
        j
    }

    #[test]
    fn a_phone_photo_keeps_its_pixels_profile_and_orientation_and_nothing_else() {
        let (_, clean) = strip(&phone_jpeg(b"")).unwrap();
        for gone in [&b"GPS"[..], b"Ann", b"MPF", b"xmpmeta"] {
            assert!(!contains(&clean, gone), "{}", String::from_utf8_lossy(gone));
        }
        assert!(
            contains(&clean, b"ICC_PROFILE\0\x01\x01profile bytes"),
            "the colour profile stays"
        );
        // Both scans and the table between them, byte for byte.
        assert!(contains(&clean, &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]));
        assert!(contains(&clean, &segment(0xC4, &[1; 20])));
        assert!(clean.ends_with(&[0x78, 0x9A, 0xFF, 0xD9]));
        // Orientation 6 (rotate 90°) survives, alone, right after SOI.
        assert_eq!(&clean[..4], &[0xFF, 0xD8, 0xFF, 0xE1]);
        assert_eq!(&clean[6..12], b"Exif\0\0");
        assert_eq!(exif_orientation(&clean[12..]), Some(6));
        for big_endian in [true, false] {
            assert_eq!(exif_orientation(&exif(3, big_endian)[6..]), Some(3));
        }
    }

    #[test]
    fn whatever_follows_the_end_of_the_image_is_cut_off() {
        let clean = strip(&phone_jpeg(b"")).unwrap().1;
        // A second image with its own GPS (MPF), a motion photo's video, an HTML tail.
        let mut second = vec![0xFF, 0xD8];
        second.extend(segment(0xE1, &exif(1, true)));
        second.extend_from_slice(&[0xFF, 0xD9]);
        let tails: [&[u8]; 3] = [
            &second,
            b"\0\0\0\x18ftypmp42 video of the porch",
            b"<html><script>alert(1)</script>",
        ];
        for tail in tails {
            assert_eq!(strip(&phone_jpeg(tail)).unwrap().1, clean);
        }
        let mut png = png();
        png.extend_from_slice(b"<html><script>alert(1)</script>");
        assert!(!contains(&strip(&png).unwrap().1, b"<html>"));
    }

    #[test]
    fn a_cmyk_photo_keeps_adobes_colour_transform() {
        let mut j = vec![0xFF, 0xD8];
        j.extend(segment(0xEE, b"Adobe\0\x64\0\0\0\0\x02"));
        j.extend(segment(0xFE, b"<script>polyglot</script>"));
        j.extend(segment(
            0xC0,
            &[8, 0, 1, 0, 1, 4, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0],
        ));
        j.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        j.extend_from_slice(&[0x11, 0xFF, 0xD9]);
        let clean = strip(&j).unwrap().1;
        assert!(contains(&clean, b"Adobe\0\x64"));
        assert!(!contains(&clean, b"<script>"));
    }

    #[test]
    fn other_files_and_damaged_images_are_refused() {
        assert_eq!(strip(b"GIF89a...").unwrap_err(), ImageError::NotAnImage);
        assert_eq!(strip(b"<svg></svg>").unwrap_err(), ImageError::NotAnImage);
        assert_eq!(
            strip(b"<?xml version=\"1.0\"?><svg onload=\"alert(1)\"/>").unwrap_err(),
            ImageError::NotAnImage
        );
        // A scan that never ends is not an image.
        let mut open = jpeg();
        open.truncate(open.len() - 2);
        assert_eq!(strip(&open).unwrap_err(), ImageError::Malformed);
        let jpeg = jpeg();
        assert_eq!(strip(&jpeg[..20]).unwrap_err(), ImageError::Malformed);
        let png = png();
        assert_eq!(strip(&png[..30]).unwrap_err(), ImageError::Malformed);
        let mut huge = png.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(strip(&huge).unwrap_err(), ImageError::Malformed);
    }
}
