//! A pool of routing-table numbers as a bitmap: lowest free table first.

#[derive(Debug, Clone)]
pub struct Pool {
    offset: u32,
    size: u32,
    words: Vec<u64>,
    used: u32,
    /// No free bit lives in a word below this index.
    first_free_word: usize,
}

impl Pool {
    /// Tables `offset ..= offset + size - 1`. The caller validated the range.
    pub fn new(offset: u32, size: u32) -> Pool {
        Pool {
            offset,
            size,
            words: vec![0; (size as usize).div_ceil(64)],
            used: 0,
            first_free_word: 0,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn used(&self) -> u32 {
        self.used
    }

    pub fn contains(&self, table: u32) -> bool {
        table >= self.offset && table - self.offset < self.size
    }

    /// The lowest free table, marked as used; `None` when the pool is full.
    pub fn allocate(&mut self) -> Option<u32> {
        for i in self.first_free_word..self.words.len() {
            let word = self.words[i];
            if word != u64::MAX {
                let bit = (!word).trailing_zeros();
                let index = i as u32 * 64 + bit;
                if index >= self.size {
                    break;
                }
                self.words[i] |= 1 << bit;
                self.used += 1;
                self.first_free_word = i;
                return Some(self.offset + index);
            }
        }
        self.first_free_word = self.words.len();
        None
    }

    /// Marks a specific table as used (leases loaded from the database).
    /// Returns false if it is outside the pool or already taken.
    pub fn claim(&mut self, table: u32) -> bool {
        if !self.contains(table) {
            return false;
        }
        let index = (table - self.offset) as usize;
        let (w, b) = (index / 64, index % 64);
        if self.words[w] & (1 << b) != 0 {
            return false;
        }
        self.words[w] |= 1 << b;
        self.used += 1;
        true
    }

    pub fn free(&mut self, table: u32) -> bool {
        if !self.contains(table) {
            return false;
        }
        let index = (table - self.offset) as usize;
        let (w, b) = (index / 64, index % 64);
        if self.words[w] & (1 << b) == 0 {
            return false;
        }
        self.words[w] &= !(1 << b);
        self.used -= 1;
        self.first_free_word = self.first_free_word.min(w);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_first() {
        let mut p = Pool::new(10000, 4);
        assert_eq!(p.allocate(), Some(10000));
        assert_eq!(p.allocate(), Some(10001));
        assert_eq!(p.allocate(), Some(10002));
        assert!(p.free(10001));
        assert!(!p.free(10001));
        assert_eq!(p.allocate(), Some(10001));
        assert_eq!(p.allocate(), Some(10003));
        assert_eq!(p.allocate(), None);
        assert_eq!(p.used(), 4);
        assert!(p.free(10000));
        assert_eq!(p.allocate(), Some(10000));
    }

    #[test]
    fn claim_and_bounds() {
        let mut p = Pool::new(100, 130);
        assert!(p.claim(100));
        assert!(!p.claim(100));
        assert!(!p.claim(99));
        assert!(!p.claim(230));
        assert!(p.claim(229));
        assert_eq!(p.allocate(), Some(101));
        for _ in 0..127 {
            assert!(p.allocate().is_some());
        }
        assert_eq!(p.allocate(), None);
        assert!(!p.free(5));
        assert!(p.free(164));
        assert_eq!(p.allocate(), Some(164));
    }

    #[test]
    fn large_pool() {
        let mut p = Pool::new(1000, 65536);
        for i in 0..65536 {
            assert_eq!(p.allocate(), Some(1000 + i));
        }
        assert_eq!(p.allocate(), None);
        assert!(p.free(1000 + 40000));
        assert_eq!(p.allocate(), Some(41000));
    }
}
