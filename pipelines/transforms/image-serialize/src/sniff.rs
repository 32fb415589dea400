//! What an image really is: its format from the magic bytes, and its width
//! and height from the format's own header — never from the file name or a
//! claimed content type. Each failure says what was missing and where.

use image_record::Format;
use sluice_guest::Error;

/// Format, width and height read from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

pub fn sniff(data: &[u8]) -> Result<Header, Error> {
    if data.is_empty() {
        return Err(Error::new("empty", "the record is empty (0 bytes)"));
    }
    let format = format_of(data).ok_or_else(|| {
        let shown = &data[..data.len().min(12)];
        Error::new(
            "unsupported-format",
            format!("the first bytes ({}) are not JPEG, PNG, GIF or WebP", hex::encode(shown)),
        )
    })?;
    let (width, height) = match format {
        Format::Png => png_size(data)?,
        Format::Gif => gif_size(data)?,
        Format::Jpeg => jpeg_size(data)?,
        Format::Webp => webp_size(data)?,
    };
    if width == 0 || height == 0 {
        return Err(Error::new(
            "corrupt",
            format!("the {} header says {width}×{height} pixels", format.name()),
        ));
    }
    Ok(Header { format, width, height })
}

fn format_of(data: &[u8]) -> Option<Format> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if data.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(Format::Jpeg)
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if data.len() >= 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else {
        None
    }
}

fn truncated(format: &str, what: &str, len: usize) -> Error {
    Error::new("truncated", format!("{format} ends at byte {len}, before its {what}"))
}

fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn png_size(data: &[u8]) -> Result<(u32, u32), Error> {
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4).
    if data.len() < 24 {
        return Err(truncated("PNG", "IHDR header", data.len()));
    }
    if &data[12..16] != b"IHDR" {
        return Err(Error::new("corrupt", "PNG does not start with an IHDR chunk"));
    }
    Ok((be32(data, 16), be32(data, 20)))
}

fn gif_size(data: &[u8]) -> Result<(u32, u32), Error> {
    if data.len() < 10 {
        return Err(truncated("GIF", "logical screen descriptor", data.len()));
    }
    let width = u16::from_le_bytes([data[6], data[7]]);
    let height = u16::from_le_bytes([data[8], data[9]]);
    Ok((u32::from(width), u32::from(height)))
}

fn jpeg_size(data: &[u8]) -> Result<(u32, u32), Error> {
    // Walk the marker segments up to a start-of-frame, which holds the size.
    let mut at = 2;
    loop {
        while at < data.len() && data[at] == 0xff && data.get(at + 1) == Some(&0xff) {
            at += 1; // fill bytes
        }
        if at + 4 > data.len() {
            return Err(truncated("JPEG", "start-of-frame marker", data.len()));
        }
        if data[at] != 0xff {
            return Err(Error::new("corrupt", format!("JPEG: expected a marker at byte {at}")));
        }
        let marker = data[at + 1];
        let length = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        let is_frame = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_frame {
            if at + 9 > data.len() {
                return Err(truncated("JPEG", "frame header", data.len()));
            }
            let height = u16::from_be_bytes([data[at + 5], data[at + 6]]);
            let width = u16::from_be_bytes([data[at + 7], data[at + 8]]);
            return Ok((u32::from(width), u32::from(height)));
        }
        if marker == 0xd9 || marker == 0xda {
            return Err(Error::new("corrupt", "JPEG: image data starts before any frame header"));
        }
        if length < 2 {
            return Err(Error::new("corrupt", format!("JPEG: segment at byte {at} has length {length}")));
        }
        at += 2 + length;
    }
}

fn webp_size(data: &[u8]) -> Result<(u32, u32), Error> {
    if data.len() < 30 {
        return Err(truncated("WebP", "first chunk header", data.len()));
    }
    let le24 = |at: usize| u32::from(data[at]) | u32::from(data[at + 1]) << 8 | u32::from(data[at + 2]) << 16;
    match &data[12..16] {
        b"VP8 " => {
            // Frame tag (3), start code (3), then 14-bit width and height.
            if data[23..26] != [0x9d, 0x01, 0x2a] {
                return Err(Error::new("corrupt", "WebP VP8: missing the frame start code"));
            }
            let width = u32::from(u16::from_le_bytes([data[26], data[27]]) & 0x3fff);
            let height = u32::from(u16::from_le_bytes([data[28], data[29]]) & 0x3fff);
            Ok((width, height))
        }
        b"VP8L" => {
            if data[20] != 0x2f {
                return Err(Error::new("corrupt", "WebP VP8L: missing the signature byte"));
            }
            let bits = u32::from_le_bytes([data[21], data[22], data[23], data[24]]);
            Ok(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8X" => Ok((le24(24) + 1, le24(27) + 1)),
        other => Err(Error::new(
            "corrupt",
            format!("WebP: unknown first chunk {:?}", String::from_utf8_lossy(other)),
        )),
    }
}

/// The format a file name's extension claims, if it is an image extension.
pub fn format_of_name(name: &str) -> Option<Format> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Format::ALL.into_iter().find(|f| f.extensions().contains(&extension.as_str()))
}

/// The format a MIME type claims, if it is one of ours.
pub fn format_of_mime(mime: &str) -> Option<Format> {
    let essence = mime.split(';').next()?.trim().to_ascii_lowercase();
    Format::ALL.into_iter().find(|f| f.mime() == essence || (essence == "image/jpg" && *f == Format::Jpeg))
}
