//! Checking and cleaning a customer's photo: JPEG or PNG by their magic bytes,
//! with the metadata that can locate or identify someone (EXIF, XMP, comments,
//! text chunks) taken out. The pixels are not decoded or touched.

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

/// Copies a JPEG's segments except APP0–APP15 (JFIF, EXIF, XMP, ICC, Photoshop…)
/// and COM; from the start of scan on, the rest is copied as it is.
fn strip_jpeg(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]);
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
                return Ok(out);
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
        let metadata = matches!(marker, 0xE0..=0xEF | 0xFE);
        if !metadata {
            out.extend_from_slice(&bytes[at..end]);
        }
        if marker == 0xDA {
            // Start of scan: entropy-coded data and the markers after it carry no metadata we remove.
            out.extend_from_slice(&bytes[end..]);
            return Ok(out);
        }
        at = end;
    }
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

    #[test]
    fn other_files_and_damaged_images_are_refused() {
        assert_eq!(strip(b"GIF89a...").unwrap_err(), ImageError::NotAnImage);
        assert_eq!(strip(b"<svg></svg>").unwrap_err(), ImageError::NotAnImage);
        let jpeg = jpeg();
        assert_eq!(strip(&jpeg[..20]).unwrap_err(), ImageError::Malformed);
        let png = png();
        assert_eq!(strip(&png[..30]).unwrap_err(), ImageError::Malformed);
        let mut huge = png.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(strip(&huge).unwrap_err(), ImageError::Malformed);
    }
}
