use super::copy_store;
use crate::store::catalog::{ALL, AUDIT, USERS};
use crate::store::{MemoryStore, Scan, Store};

#[test]
fn copy_store_copies_every_tree_across_pages() {
    let src = MemoryStore::new();
    let src: &dyn Store = &src;
    src.write(|tx| {
        // More than one scan page, with keys that sort across byte values.
        for i in 0..2500u32 {
            tx.put(USERS, &i.to_be_bytes(), format!("user {i}").as_bytes())?;
        }
        tx.put(AUDIT, b"a", b"1")?;
        tx.put(AUDIT, &[0xff, 0xff], b"2")
    })
    .unwrap();
    let dst = MemoryStore::new();
    let dst: &dyn Store = &dst;
    assert_eq!(copy_store(src, dst).unwrap(), 2502);
    for &tree in ALL {
        assert_eq!(
            src.scan(tree, &Scan::all()).unwrap(),
            dst.scan(tree, &Scan::all()).unwrap(),
            "{tree}"
        );
    }
}
