//! Starting inputs for the fuzzers: real requests and responses, and roster files of
//! each kind the station staff upload. `scripts/fuzz` writes them into the corpus
//! before a run; the replay test runs them too.

use crate::fixtures;
use rust_xlsxwriter::{Workbook, XlsxError};

/// Envelope seeds: every request the fixture phones sent, and the protocol's own
/// fixtures in both versions.
pub fn envelope() -> Vec<Vec<u8>> {
    use sync_core::protocol::fixtures as f;
    let mut out = fixtures::server().1.clone();
    out.push(f::request_v1().encode());
    out.push(f::request_v2().encode());
    out.push(f::response_v1().encode_version(1));
    out.push(f::response_v2().encode());
    out
}

/// Roster seeds, each with its leading name byte (see [`crate::roster`]): CSV in UTF-8
/// with a byte-order mark and Chinese headers, in GBK, with English headers and quoted
/// commas, one with bad cells, and an XLSX workbook.
pub fn roster() -> Vec<Vec<u8>> {
    let csv = |name: u8, text: &[u8]| [&[name][..], text].concat();
    let zh = "\u{feff}备注,走访频率（天）,姓名,地址,电话,出生年份,居住情况,风险等级,紧急联系人,需求\r\n\
              老党员,7,王阿婆,华沙六村 3 号 201,13800000001,1938,独居,高,女儿 13900000001,读报\r\n\
              ,14,李老伯,华沙六村 5 号 102,,1941年,with_spouse,low,,\r\n,,,,,,,,,\r\n";
    let gbk: &[u8] = b"\xd0\xd5\xc3\xfb,\xb5\xd8\xd6\xb7\r\n\xcd\xf5\xb0\xa2\xc6\xc5,\xbb\xaa\xc9\xb3\xc1\xf9\xb4\xe5\r\n";
    let en = "Name,Address,Birth year,Risk level,Visit every (days),Living situation\n\
              \"Zhang, Wei\",Huasha 8,1940,medium,30,alone\nOld Wu,Huasha 9,,,,\n";
    let bad = "姓名,出生年份,风险等级,走访频率（天）\n,1800,极高,-3\n王阿婆,abc,,0\n";
    let mut out = vec![
        csv(0, zh.as_bytes()),
        csv(0, gbk),
        csv(2, en.as_bytes()),
        csv(0, bad.as_bytes()),
    ];
    if let Ok(book) = workbook() {
        out.push([&[1][..], &book].concat());
    }
    out
}

fn workbook() -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let header = [
        "Name",
        "Birth year",
        "Risk level",
        "Visit every (days)",
        "Phone",
        "Address",
    ];
    for (c, h) in (0_u16..).zip(header) {
        sheet.write_string(0, c, h)?;
    }
    sheet.write_string(1, 0, "周奶奶")?;
    sheet.write_number(1, 1, 1935.0)?;
    sheet.write_string(1, 2, "Medium")?;
    sheet.write_number(1, 3, 10.0)?;
    sheet.write_number(1, 4, 13_800_000_002.0)?;
    sheet.write_string(1, 5, "翔宇品城 2 号")?;
    book.save_to_buffer()
}
