//! A content hash of an encoded protobuf message that does not depend on map order.
//!
//! prost encodes protobuf maps (`typed_per_filter_config`, metadata `Struct`s) from `HashMap`s,
//! in an order that differs from one map to another, so equal resources can encode to different
//! bytes. This module hashes a canonical form of the bytes instead: the same wire format with
//! the entries of each map sorted, found by walking the bytes along the message's descriptor
//! (and into `google.protobuf.Any` values, by their type URL). Everything else prost writes in
//! field order, so equal messages have equal canonical forms. The walk reads the bytes once and
//! allocates only for map entries; it replaced a hash of the proto3 JSON rendering, which cost
//! several times more (about a tenth of the server's CPU under the load harness).
//!
//! Bytes the walk cannot follow (a type missing from the descriptor pool, a malformed message)
//! are hashed as they are, under another tag: such a resource still gets a version, only one that
//! map order may change. Must not be used for anything but hashing: the canonical form is not
//! what goes on the wire.

use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};
use prost_reflect::{Kind, MessageDescriptor};
use xxhash_rust::xxh3::Xxh3;

use crate::envoy_json::message_descriptor;

/// The 128-bit XXH3 of the canonical form of `bytes`, an encoded message of type `full_name`.
pub fn canonical_hash(full_name: &str, bytes: &[u8]) -> u128 {
    let mut hasher = Xxh3::new();
    let canonical = message_descriptor(full_name).and_then(|descriptor| {
        let mut out = Vec::with_capacity(bytes.len());
        write_canonical(&descriptor, bytes, &mut out).map(|()| out)
    });
    match canonical {
        Some(canonical) => {
            hasher.update(b"c");
            hasher.update(&canonical);
        }
        None => {
            hasher.update(b"b");
            hasher.update(bytes);
        }
    }
    hasher.digest128()
}

/// Appends the canonical form of `bytes` (a message of type `descriptor`) to `out`; `None` where
/// the bytes are not a well-formed message of that type.
fn write_canonical(
    descriptor: &MessageDescriptor,
    mut bytes: &[u8],
    out: &mut Vec<u8>,
) -> Option<()> {
    // Entries of the map field being read, canonical, waiting to be sorted and written.
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut entries_of: Option<u32> = None;
    while bytes.has_remaining() {
        let (number, wire_type) = decode_key(&mut bytes).ok()?;
        let field = descriptor.get_field(number);
        let map_entry = field
            .as_ref()
            .filter(|field| field.is_map() && wire_type == WireType::LengthDelimited);
        if entries_of.is_some() && entries_of != map_entry.map(|_| number) {
            flush_entries(entries_of.take()?, &mut entries, out);
        }
        match wire_type {
            WireType::Varint => {
                let value = decode_varint(&mut bytes).ok()?;
                encode_key(number, wire_type, out);
                encode_varint(value, out);
            }
            WireType::SixtyFourBit => copy_field(number, wire_type, &mut bytes, 8, out)?,
            WireType::ThirtyTwoBit => copy_field(number, wire_type, &mut bytes, 4, out)?,
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut bytes).ok()?).ok()?;
                let value = bytes.get(..len)?;
                bytes.advance(len);
                let nested = field.as_ref().and_then(|field| match field.kind() {
                    Kind::Message(nested) => Some(nested),
                    _ => None,
                });
                match (map_entry, nested) {
                    (Some(_), Some(entry)) => {
                        let mut canonical = Vec::with_capacity(value.len());
                        write_message(&entry, value, &mut canonical)?;
                        entries.push(canonical);
                        entries_of = Some(number);
                    }
                    (None, Some(nested)) => {
                        encode_key(number, wire_type, out);
                        encode_varint(value.len() as u64, out);
                        write_message(&nested, value, out)?;
                    }
                    // Strings, bytes, packed scalars, fields the descriptor does not know.
                    _ => {
                        encode_key(number, wire_type, out);
                        encode_varint(value.len() as u64, out);
                        out.extend_from_slice(value);
                    }
                }
            }
            // Groups are proto2; Envoy's protos have none.
            WireType::StartGroup | WireType::EndGroup => return None,
        }
    }
    if let Some(number) = entries_of {
        flush_entries(number, &mut entries, out);
    }
    Some(())
}

/// A nested message's canonical form; an `Any` canonicalizes its value by the type it names.
fn write_message(descriptor: &MessageDescriptor, bytes: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if descriptor.full_name() == "google.protobuf.Any" {
        write_any(bytes, out)
    } else {
        write_canonical(descriptor, bytes, out)
    }
}

/// An `Any`: its type URL as it is, its value canonical if the pool knows the type.
fn write_any(mut bytes: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut type_url: &[u8] = &[];
    while bytes.has_remaining() {
        let (number, wire_type) = decode_key(&mut bytes).ok()?;
        if wire_type != WireType::LengthDelimited {
            return None;
        }
        let len = usize::try_from(decode_varint(&mut bytes).ok()?).ok()?;
        let value = bytes.get(..len)?;
        bytes.advance(len);
        encode_key(number, wire_type, out);
        encode_varint(value.len() as u64, out);
        if number == 1 {
            type_url = value;
        }
        let named = (number == 2)
            .then(|| std::str::from_utf8(type_url).ok()?.rsplit_once('/'))
            .flatten()
            .and_then(|(_, name)| message_descriptor(name));
        match named {
            Some(descriptor) => write_canonical(&descriptor, value, out)?,
            None => out.extend_from_slice(value),
        }
    }
    Some(())
}

fn copy_field(
    number: u32,
    wire_type: WireType,
    bytes: &mut &[u8],
    len: usize,
    out: &mut Vec<u8>,
) -> Option<()> {
    let value = bytes.get(..len)?;
    encode_key(number, wire_type, out);
    out.extend_from_slice(value);
    bytes.advance(len);
    Some(())
}

/// Writes the gathered entries of map field `number` sorted by their canonical bytes: an order
/// that depends on the map's content alone.
fn flush_entries(number: u32, entries: &mut Vec<Vec<u8>>, out: &mut Vec<u8>) {
    entries.sort_unstable();
    for entry in entries.drain(..) {
        encode_key(number, WireType::LengthDelimited, out);
        encode_varint(entry.len() as u64, out);
        out.extend_from_slice(&entry);
    }
}

#[cfg(test)]
mod tests;
