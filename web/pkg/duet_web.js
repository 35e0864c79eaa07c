let wasm_bindgen = (function(exports) {
    let script_src;
    if (typeof document !== 'undefined' && document.currentScript !== null) {
        script_src = new URL(document.currentScript.src, location.href).toString();
    }

    /**
     * BLAKE3 for the page: the digest of the part of a file a folder already holds, offered
     * back to the sender to resume after it.
     */
    class Digest {
        __destroy_into_raw() {
            const ptr = this.__wbg_ptr;
            this.__wbg_ptr = 0;
            DigestFinalization.unregister(this);
            return ptr;
        }
        free() {
            const ptr = this.__destroy_into_raw();
            wasm.__wbg_digest_free(ptr, 0);
        }
        /**
         * @returns {Uint8Array}
         */
        finish() {
            const ret = wasm.digest_finish(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        constructor() {
            const ret = wasm.digest_new();
            this.__wbg_ptr = ret;
            DigestFinalization.register(this, this.__wbg_ptr, this);
            return this;
        }
        /**
         * @param {Uint8Array | number[]} bytes
         */
        update(bytes) {
            const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            wasm.digest_update(this.__wbg_ptr, ptr0, len0);
        }
    }
    if (Symbol.dispose) Digest.prototype[Symbol.dispose] = Digest.prototype.free;
    exports.Digest = Digest;

    /**
     * One end of a transfer.
     */
    class Transfer {
        static __wrap(ptr) {
            const obj = Object.create(Transfer.prototype);
            obj.__wbg_ptr = ptr;
            TransferFinalization.register(obj, obj.__wbg_ptr, obj);
            return obj;
        }
        __destroy_into_raw() {
            const ptr = this.__wbg_ptr;
            this.__wbg_ptr = 0;
            TransferFinalization.unregister(this);
            return ptr;
        }
        free() {
            const ptr = this.__destroy_into_raw();
            wasm.__wbg_transfer_free(ptr, 0);
        }
        /**
         * Receiver: accepts the whole list, with what [`Transfer::offer`] said is held.
         * @returns {Uint8Array}
         */
        accept_frame() {
            const ret = wasm.transfer_accept_frame(this.__wbg_ptr);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Adds a file (or, with `dir`, a directory) to send, before the transfer starts. Its
         * name is checked as the receiver will check it; the list as a whole (no name twice, no
         * file that is also a folder) by [`Transfer::added`], once, so that a folder of many
         * thousand files costs linear time.
         * @param {string} path
         * @param {number} size
         * @param {boolean} dir
         */
        add(path, size, dir) {
            const val2 = +size;
            const val3 = +dir;
            const ptr0 = passStringToWasm0(path, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_add(this.__wbg_ptr, ptr0, len0, val2, val3);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * Ends the list: checks it whole and makes it the one this end sends.
         */
        added() {
            const ret = wasm.transfer_added(this.__wbg_ptr);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * @returns {string}
         */
        code() {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.transfer_code(this.__wbg_ptr);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * The first frame after the keys.
         * @returns {Uint8Array}
         */
        confirm() {
            const ret = wasm.transfer_confirm(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Entries of the list (the receiver's once [`step::LIST`], the sender's as added).
         * @returns {number}
         */
        count() {
            const ret = wasm.transfer_count(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * Receiver: the file that [`step::START`] started (an index among the files).
         * @returns {number}
         */
        current() {
            const ret = wasm.transfer_current(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * Sender: the next slice of the current file as a `DATA` frame, hashed on the way.
         * The frame stays here, at [`Transfer::plain_at`] for [`Transfer::plain_len`] bytes,
         * for WebCrypto to seal where it lies: handing it out would make a fresh buffer of the
         * slice's size for every frame, and the page's thread pays for fresh memory.
         * @param {Uint8Array | number[]} bytes
         */
        data_frame(bytes) {
            const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_data_frame(this.__wbg_ptr, ptr0, len0);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * Sender: the end of the transfer.
         * @returns {Uint8Array}
         */
        done_frame() {
            const ret = wasm.transfer_done_frame(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * @param {number} i
         * @returns {boolean}
         */
        entry_dir(i) {
            const ret = wasm.transfer_entry_dir(this.__wbg_ptr, i);
            return ret !== 0;
        }
        /**
         * @param {number} i
         * @returns {string}
         */
        entry_path(i) {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.transfer_entry_path(this.__wbg_ptr, i);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * @param {number} i
         * @returns {number}
         */
        entry_size(i) {
            const ret = wasm.transfer_entry_size(this.__wbg_ptr, i);
            return ret;
        }
        /**
         * Either side: stopping, and why.
         * @param {string} why
         * @returns {Uint8Array}
         */
        static fail_frame(why) {
            const ptr0 = passStringToWasm0(why, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_fail_frame(ptr0, len0);
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
        /**
         * The index in the list of file `n` (an index among the files).
         * @param {number} n
         * @returns {number}
         */
        file_entry(n) {
            const ret = wasm.transfer_file_entry(this.__wbg_ptr, n);
            return ret >>> 0;
        }
        /**
         * Takes one opened frame (kind and body); returns a [`step`].
         * @param {Uint8Array | number[]} opened
         * @returns {number}
         */
        frame(opened) {
            const ptr0 = passArray8ToWasm0(opened, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_frame(this.__wbg_ptr, ptr0, len0);
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return ret[0] >>> 0;
        }
        /**
         * What goes before a frame sealed elsewhere of `len` bytes (ciphertext and tag), for
         * a page that sends the two apart rather than copy the frame to join them.
         * @param {number} len
         * @returns {Uint8Array}
         */
        static frame_head(len) {
            const ret = wasm.transfer_frame_head(len);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * A frame sealed elsewhere (ciphertext and tag), framed for the wire.
         * @param {Uint8Array | number[]} sealed
         * @returns {Uint8Array}
         */
        static framed(sealed) {
            const ptr0 = passArray8ToWasm0(sealed, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_framed(ptr0, len0);
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
        /**
         * Sender: the digest that ends file `n`.
         * @param {number} n
         * @returns {Uint8Array}
         */
        hash_frame(n) {
            const ret = wasm.transfer_hash_frame(this.__wbg_ptr, n);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Receiver: the held part of a resumed file, read again after [`step::START`] before
         * the next frame, so that its digest covers the whole file.
         * @param {Uint8Array | number[]} bytes
         */
        held(bytes) {
            const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            wasm.transfer_held(this.__wbg_ptr, ptr0, len0);
        }
        /**
         * The bytes to send first.
         * @returns {Uint8Array}
         */
        hello() {
            const ret = wasm.transfer_hello(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Sender: the list's frame `i`.
         * @param {number} i
         * @returns {Uint8Array}
         */
        list_frame(i) {
            const ret = wasm.transfer_list_frame(this.__wbg_ptr, i);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Sender: how many frames the list takes (an `ENTRY` each, then `LIST_END`).
         * @returns {number}
         */
        list_len() {
            const ret = wasm.transfer_list_len(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * Receiver: offers the first `have` bytes of file `n` (an index among the files), whose
         * BLAKE3 is `digest`, already held: the sender resumes after them if its own file
         * starts the same. Before [`Transfer::accept_frame`].
         * @param {number} n
         * @param {number} have
         * @param {Uint8Array | number[]} digest
         */
        offer(n, have, digest) {
            const val2 = +n;
            const val3 = +have;
            const ptr0 = passArray8ToWasm0(digest, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_offer(this.__wbg_ptr, val2, val3, ptr0, len0);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * Receiver: where the file [`step::START`] started begins (after the held part).
         * @returns {number}
         */
        offset() {
            const ret = wasm.transfer_offset(this.__wbg_ptr);
            return ret;
        }
        /**
         * Receiver: everything is in place.
         * @returns {Uint8Array}
         */
        static ok_frame() {
            const ret = wasm.transfer_ok_frame();
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Why a frame that did not open ends the transfer (a wrong code before the
         * confirmation).
         * @returns {string}
         */
        open_failed_text() {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.transfer_open_failed_text(this.__wbg_ptr);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * Opens a sealed frame here: its kind and body.
         * @param {Uint8Array | number[]} sealed
         * @returns {Uint8Array}
         */
        open_here(sealed) {
            const ptr0 = passArray8ToWasm0(sealed, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_open_here(this.__wbg_ptr, ptr0, len0);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
        /**
         * The key that opens the other side's frames, for WebCrypto.
         * @returns {Uint8Array}
         */
        open_key() {
            const ret = wasm.transfer_open_key(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * The nonce for the next frame of the other side opened elsewhere (counted).
         * @returns {Uint8Array}
         */
        open_nonce() {
            const ret = wasm.transfer_open_nonce(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Where the frame [`Transfer::data_frame`] made lies in [`crate::wasm_memory`]. Valid
         * until the next call into this module.
         * @returns {number}
         */
        plain_at() {
            const ret = wasm.transfer_plain_at(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * @returns {number}
         */
        plain_len() {
            const ret = wasm.transfer_plain_len(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * Takes one message of the stream; then call [`Transfer::step`] until it gives
         * [`step::NONE`].
         * @param {Uint8Array | number[]} piece
         */
        push(piece) {
            const ptr0 = passArray8ToWasm0(piece, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_push(this.__wbg_ptr, ptr0, len0);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * The receiving end for `code` (as typed or from a link).
         * @param {string} code
         * @returns {Transfer}
         */
        static receiver(code) {
            const ptr0 = passStringToWasm0(code, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_receiver(ptr0, len0);
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return Transfer.__wrap(ret[0]);
        }
        /**
         * Receiver: refuses the list, saying why.
         * @param {string} why
         * @returns {Uint8Array}
         */
        static reject_frame(why) {
            const ptr0 = passStringToWasm0(why, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_reject_frame(ptr0, len0);
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
        /**
         * Seals `plain` (kind and body) here and frames it for the wire.
         * @param {Uint8Array | number[]} plain
         * @returns {Uint8Array}
         */
        seal_here(plain) {
            const ptr0 = passArray8ToWasm0(plain, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.transfer_seal_here(this.__wbg_ptr, ptr0, len0);
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
        /**
         * The key that seals this side's frames, for WebCrypto.
         * @returns {Uint8Array}
         */
        seal_key() {
            const ret = wasm.transfer_seal_key(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * The nonce for the next frame this side seals elsewhere (counted).
         * @returns {Uint8Array}
         */
        seal_nonce() {
            const ret = wasm.transfer_seal_nonce(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * The sealed frame of [`step::SEALED`] (kind, body, tag), once.
         * @returns {Uint8Array}
         */
        sealed() {
            const ret = wasm.transfer_sealed(this.__wbg_ptr);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Where the sealed frame of [`step::SEALED`] lies in [`wasm_memory`], with
         * [`Transfer::sealed_len`]: WebCrypto copies it from there, so the page makes no
         * garbage of a MiB per frame. Valid until the next call into this module.
         * @returns {number}
         */
        sealed_at() {
            const ret = wasm.transfer_sealed_at(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * @returns {number}
         */
        sealed_len() {
            const ret = wasm.transfer_sealed_len(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * A sending end with a fresh code; entries are added with [`Transfer::add`].
         * @returns {Transfer}
         */
        static sender() {
            const ret = wasm.transfer_sender();
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return Transfer.__wrap(ret[0]);
        }
        /**
         * Sender: the `START` of file `n` (an index among the files, from byte 0).
         * @param {number} n
         * @returns {Uint8Array}
         */
        start_frame(n) {
            const ret = wasm.transfer_start_frame(this.__wbg_ptr, n);
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * The next step the stream holds.
         * @returns {number}
         */
        step() {
            const ret = wasm.transfer_step(this.__wbg_ptr);
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return ret[0] >>> 0;
        }
        /**
         * The relay's pipe: only the code's number.
         * @returns {string}
         */
        token() {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.transfer_token(this.__wbg_ptr);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
    }
    if (Symbol.dispose) Transfer.prototype[Symbol.dispose] = Transfer.prototype.free;
    exports.Transfer = Transfer;

    /**
     * A wormhole directory's zip, unpacked as the page reads it.
     */
    class Unzip {
        __destroy_into_raw() {
            const ptr = this.__wbg_ptr;
            this.__wbg_ptr = 0;
            UnzipFinalization.unregister(this);
            return ptr;
        }
        free() {
            const ptr = this.__destroy_into_raw();
            wasm.__wbg_unzip_free(ptr, 0);
        }
        /**
         * Ends the entry: every byte of its stated size came, with its CRC-32.
         */
        close() {
            const ret = wasm.unzip_close(this.__wbg_ptr);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * @returns {number}
         */
        count() {
            const ret = wasm.unzip_count(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * Where entry `i`'s data starts in the zip, and how many bytes it takes there.
         * @param {number} i
         * @returns {number}
         */
        data_at(i) {
            const ret = wasm.unzip_data_at(this.__wbg_ptr, i);
            return ret;
        }
        /**
         * @param {number} i
         * @returns {number}
         */
        data_len(i) {
            const ret = wasm.unzip_data_len(this.__wbg_ptr, i);
            return ret;
        }
        /**
         * The bytes the page read at `offset`, as [`Unzip::wants`] asked.
         * @param {number} offset
         * @param {Uint8Array | number[]} bytes
         */
        give(offset, bytes) {
            const val2 = +offset;
            const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.unzip_give(this.__wbg_ptr, val2, ptr0, len0);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * Takes the next slice of the entry's data (none: what is held already) and gives
         * back at most 256 KiB of its content; call again with an empty slice while it gives
         * something.
         * @param {Uint8Array | number[]} slice
         * @returns {Uint8Array}
         */
        inflate(slice) {
            const ptr0 = passArray8ToWasm0(slice, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.unzip_inflate(this.__wbg_ptr, ptr0, len0);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
        /**
         * @param {number} i
         * @returns {boolean}
         */
        is_dir(i) {
            const ret = wasm.unzip_is_dir(this.__wbg_ptr, i);
            return ret !== 0;
        }
        /**
         * A zip of `size` bytes whose files may hold `limit` bytes in all (the offer's
         * `numbytes`).
         * @param {number} size
         * @param {number} limit
         */
        constructor(size, limit) {
            const ret = wasm.unzip_new(size, limit);
            this.__wbg_ptr = ret;
            UnzipFinalization.register(this, this.__wbg_ptr, this);
            return this;
        }
        /**
         * Starts entry `i`: its data follows with [`Unzip::inflate`].
         * @param {number} i
         */
        open(i) {
            wasm.unzip_open(this.__wbg_ptr, i);
        }
        /**
         * Entry `i`'s path inside the directory ('/' between its parts).
         * @param {number} i
         * @returns {string}
         */
        path(i) {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.unzip_path(this.__wbg_ptr, i);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * @param {number} i
         * @returns {number}
         */
        size(i) {
            const ret = wasm.unzip_size(this.__wbg_ptr, i);
            return ret;
        }
        /**
         * Where the list needs bytes next, as `[offset, length]`, or nothing once it is read
         * whole (then [`Unzip::count`] and the entries). Fails on a broken or hostile zip.
         * @returns {Float64Array | undefined}
         */
        wants() {
            const ret = wasm.unzip_wants(this.__wbg_ptr);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            let v1;
            if (ret[0] !== 0) {
                v1 = getArrayF64FromWasm0(ret[0], ret[1]).slice();
                wasm.__wbindgen_free(ret[0], ret[1] * 8, 8);
            }
            return v1;
        }
    }
    if (Symbol.dispose) Unzip.prototype[Symbol.dispose] = Unzip.prototype.free;
    exports.Unzip = Unzip;

    /**
     * One end of a wormhole.
     */
    class Wormhole {
        static __wrap(ptr) {
            const obj = Object.create(Wormhole.prototype);
            obj.__wbg_ptr = ptr;
            WormholeFinalization.register(obj, obj.__wbg_ptr, obj);
            return obj;
        }
        __destroy_into_raw() {
            const ptr = this.__wbg_ptr;
            this.__wbg_ptr = 0;
            WormholeFinalization.unregister(this);
            return ptr;
        }
        free() {
            const ptr = this.__destroy_into_raw();
            wasm.__wbg_wormhole_free(ptr, 0);
        }
        /**
         * Accepts the offer: the answer goes out, and for data the transit wire is made.
         */
        accept() {
            const ret = wasm.wormhole_accept(this.__wbg_ptr);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * The last transit message, once all the data is here: the SHA-256 of it, sealed.
         * @returns {Uint8Array}
         */
        ack() {
            const ret = wasm.wormhole_ack(this.__wbg_ptr);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * Whether the receiver confirmed every byte (an error if its digest differs).
         * @returns {boolean}
         */
        acked() {
            const ret = wasm.wormhole_acked(this.__wbg_ptr);
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return ret[0] !== 0;
        }
        /**
         * Ends the session with `mood` (`happy`, `errory`…): the messages go out with
         * [`Wormhole::outgoing`].
         * @param {string} mood
         */
        close(mood) {
            const ptr0 = passStringToWasm0(mood, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            wasm.wormhole_close(this.__wbg_ptr, ptr0, len0);
        }
        /**
         * The code (a sender's once the server allocated its nameplate), or empty.
         * @returns {string}
         */
        code() {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.wormhole_code(this.__wbg_ptr);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * Whether the sender chose the transit connection (its `go` came).
         * @returns {boolean}
         */
        flowing() {
            const ret = wasm.wormhole_flowing(this.__wbg_ptr);
            return ret !== 0;
        }
        /**
         * Whether `text` is a wormhole code by its form (PGP words); a code that could also be
         * duet's stays duet's in the page, as `duet recv` takes it without asking.
         * @param {string} text
         * @returns {boolean}
         */
        static is_code(text) {
            const ptr0 = passStringToWasm0(text, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.wormhole_is_code(ptr0, len0);
            return ret !== 0;
        }
        /**
         * The next piece of data, in order, or nothing.
         * @returns {Uint8Array | undefined}
         */
        next_data() {
            const ret = wasm.wormhole_next_data(this.__wbg_ptr);
            let v1;
            if (ret[0] !== 0) {
                v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
                wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            }
            return v1;
        }
        /**
         * A sender's offer of several files or a folder, as the zip `ZipOut` makes: this relay
         * as the transit hint, then a `directory` offer named `name`.
         * @param {string} name
         * @param {number} zipsize
         * @param {number} numbytes
         * @param {number} numfiles
         */
        offer_directory(name, zipsize, numbytes, numfiles) {
            const val2 = +zipsize;
            const val3 = +numbytes;
            const val4 = +numfiles;
            const ptr0 = passStringToWasm0(name, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.wormhole_offer_directory(this.__wbg_ptr, ptr0, len0, val2, val3, val4);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * A sender's offer of one file: this relay as the transit hint, then the offer.
         * @param {string} name
         * @param {number} size
         */
        offer_file(name, size) {
            const val2 = +size;
            const ptr0 = passStringToWasm0(name, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.wormhole_offer_file(this.__wbg_ptr, ptr0, len0, val2);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * `text`, `file` or `directory` (a zip file), or empty before the offer.
         * @returns {string}
         */
        offer_kind() {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.wormhole_offer_kind(this.__wbg_ptr);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * A sender's text message.
         * @param {string} text
         */
        offer_message(text) {
            const ptr0 = passStringToWasm0(text, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.wormhole_offer_message(this.__wbg_ptr, ptr0, len0);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * The offered name (checked: one plain part): a file's, or a directory's folder name.
         * @returns {string}
         */
        offer_name() {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.wormhole_offer_name(this.__wbg_ptr);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * What a directory offer's files hold in all (its zip may hold no more).
         * @returns {number}
         */
        offer_numbytes() {
            const ret = wasm.wormhole_offer_numbytes(this.__wbg_ptr);
            return ret;
        }
        /**
         * The bytes that will arrive (a directory's zip size).
         * @returns {number}
         */
        offer_size() {
            const ret = wasm.wormhole_offer_size(this.__wbg_ptr);
            return ret;
        }
        /**
         * A text offer's text (the page shows it as text, never as markup).
         * @returns {string}
         */
        offer_text() {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.wormhole_offer_text(this.__wbg_ptr);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * The messages for the mailbox server, one per line, and forgets them.
         * @returns {string}
         */
        outgoing() {
            let deferred1_0;
            let deferred1_1;
            try {
                const ret = wasm.wormhole_outgoing(this.__wbg_ptr);
                deferred1_0 = ret[0];
                deferred1_1 = ret[1];
                return getStringFromWasm0(ret[0], ret[1]);
            } finally {
                wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
            }
        }
        /**
         * Data bytes received so far.
         * @returns {number}
         */
        received() {
            const ret = wasm.wormhole_received(this.__wbg_ptr);
            return ret;
        }
        /**
         * A receiver for `code`; `host` and `port` are the relay's (the page's origin), offered
         * to the sender as the transit relay.
         * @param {string} code
         * @param {string} host
         * @param {number} port
         * @returns {Wormhole}
         */
        static receiver(code, host, port) {
            const val3 = +port;
            let ptr0, len0, ptr1, len1;
            try {
                ptr0 = passStringToWasm0(code, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
                len0 = WASM_VECTOR_LEN;
                ptr1 = passStringToWasm0(host, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
                len1 = WASM_VECTOR_LEN;
            } catch (e) {
                if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
                if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
                throw e;
            }
            const ret = wasm.wormhole_receiver(ptr0, len0, ptr1, len1, val3);
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return Wormhole.__wrap(ret[0]);
        }
        /**
         * Refuses the offer (or gives up), saying why to the sender.
         * @param {string} why
         */
        refuse(why) {
            const ptr0 = passStringToWasm0(why, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            wasm.wormhole_refuse(this.__wbg_ptr, ptr0, len0);
        }
        /**
         * The first message on the transit WebSocket: the relay's handshake.
         * @returns {Uint8Array}
         */
        relay_handshake() {
            const ret = wasm.wormhole_relay_handshake(this.__wbg_ptr);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * A sender's record of `data`, sealed, to send on the transit WebSocket.
         * @param {Uint8Array | number[]} data
         * @returns {Uint8Array}
         */
        seal(data) {
            const ptr0 = passArray8ToWasm0(data, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.wormhole_seal(this.__wbg_ptr, ptr0, len0);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
        /**
         * A sender: the code comes from the nameplate the server allocates ([`Wormhole::code`]).
         * @param {string} host
         * @param {number} port
         * @returns {Wormhole}
         */
        static sender(host, port) {
            const val2 = +port;
            const ptr0 = passStringToWasm0(host, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.wormhole_sender(ptr0, len0, val2);
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return Wormhole.__wrap(ret[0]);
        }
        /**
         * Takes one message from the mailbox server; see [`found`].
         * @param {string} text
         * @returns {number}
         */
        server(text) {
            const ptr0 = passStringToWasm0(text, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.wormhole_server(this.__wbg_ptr, ptr0, len0);
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return ret[0] >>> 0;
        }
        /**
         * A sender's transit wire, once the receiver answered.
         */
        start_transit() {
            const ret = wasm.wormhole_start_transit(this.__wbg_ptr);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * Takes a transit message; what to send back (maybe nothing). The data it carried
         * comes out of [`Wormhole::next_data`].
         * @param {Uint8Array | number[]} piece
         * @returns {Uint8Array}
         */
        transit(piece) {
            const ptr0 = passArray8ToWasm0(piece, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.wormhole_transit(this.__wbg_ptr, ptr0, len0);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
    }
    if (Symbol.dispose) Wormhole.prototype[Symbol.dispose] = Wormhole.prototype.free;
    exports.Wormhole = Wormhole;

    /**
     * The zip of a wormhole directory offer, made as the page sends it.
     */
    class ZipOut {
        __destroy_into_raw() {
            const ptr = this.__wbg_ptr;
            this.__wbg_ptr = 0;
            ZipOutFinalization.unregister(this);
            return ptr;
        }
        free() {
            const ptr = this.__destroy_into_raw();
            wasm.__wbg_zipout_free(ptr, 0);
        }
        /**
         * Adds a file of `size` bytes (or, with `dir`, a folder) at `path` inside the
         * directory ('/' between parts), checked as a receiver will check it.
         * @param {string} path
         * @param {number} size
         * @param {boolean} dir
         */
        add(path, size, dir) {
            const val2 = +size;
            const val3 = +dir;
            const ptr0 = passStringToWasm0(path, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.zipout_add(this.__wbg_ptr, ptr0, len0, val2, val3);
            if (ret[1]) {
                throw takeFromExternrefTable0(ret[0]);
            }
        }
        /**
         * @returns {number}
         */
        count() {
            const ret = wasm.zipout_count(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * A slice of the entry's data, as it goes into the zip (counted, and into its CRC).
         * @param {Uint8Array | number[]} bytes
         * @returns {Uint8Array}
         */
        data(bytes) {
            const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.zipout_data(this.__wbg_ptr, ptr0, len0);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v2;
        }
        /**
         * The zip's last bytes: the last entry's end, the list and the end record.
         * @returns {Uint8Array}
         */
        finish() {
            const ret = wasm.zipout_finish(this.__wbg_ptr);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        constructor() {
            const ret = wasm.zipout_new();
            this.__wbg_ptr = ret;
            ZipOutFinalization.register(this, this.__wbg_ptr, this);
            return this;
        }
        /**
         * What the files hold in all (the offer's `numbytes`).
         * @returns {number}
         */
        num_bytes() {
            const ret = wasm.zipout_num_bytes(this.__wbg_ptr);
            return ret;
        }
        /**
         * How many files (the offer's `numfiles`).
         * @returns {number}
         */
        num_files() {
            const ret = wasm.zipout_num_files(this.__wbg_ptr);
            return ret >>> 0;
        }
        /**
         * Entry `i`'s bytes before its data (with the end of the entry before it). Entries go
         * in the order they were added, each one's data whole before the next.
         * @param {number} i
         * @returns {Uint8Array}
         */
        start(i) {
            const ret = wasm.zipout_start(this.__wbg_ptr, i);
            if (ret[3]) {
                throw takeFromExternrefTable0(ret[2]);
            }
            var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
            return v1;
        }
        /**
         * The zip's size in bytes: the offer's `zipsize`. Refused past 4 GiB.
         * @returns {number}
         */
        zip_size() {
            const ret = wasm.zipout_zip_size(this.__wbg_ptr);
            if (ret[2]) {
                throw takeFromExternrefTable0(ret[1]);
            }
            return ret[0];
        }
    }
    if (Symbol.dispose) ZipOut.prototype[Symbol.dispose] = ZipOut.prototype.free;
    exports.ZipOut = ZipOut;

    /**
     * The QR code of `text` (medium error correction): its width, then its modules.
     * @param {string} text
     * @returns {string}
     */
    function qr_modules(text) {
        let deferred3_0;
        let deferred3_1;
        try {
            const ptr0 = passStringToWasm0(text, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.qr_modules(ptr0, len0);
            var ptr2 = ret[0];
            var len2 = ret[1];
            if (ret[3]) {
                ptr2 = 0; len2 = 0;
                throw takeFromExternrefTable0(ret[2]);
            }
            deferred3_0 = ptr2;
            deferred3_1 = len2;
            return getStringFromWasm0(ptr2, len2);
        } finally {
            wasm.__wbindgen_free(deferred3_0, deferred3_1, 1);
        }
    }
    exports.qr_modules = qr_modules;

    /**
     * This module's memory, for views of [`Transfer::sealed_at`].
     * @returns {any}
     */
    function wasm_memory() {
        const ret = wasm.wasm_memory();
        return ret;
    }
    exports.wasm_memory = wasm_memory;
    function __wbg_get_imports() {
        const import0 = {
            __proto__: null,
            __wbg_Error_208446807d0d1e30: function(arg0, arg1) {
                const ret = Error(getStringFromWasm0(arg0, arg1));
                return ret;
            },
            __wbg___wbindgen_is_function_741ff2bb612836f5: function(arg0) {
                const ret = typeof(arg0) === 'function';
                return ret;
            },
            __wbg___wbindgen_is_object_8b968c3ab8e96595: function(arg0) {
                const val = arg0;
                const ret = typeof(val) === 'object' && val !== null;
                return ret;
            },
            __wbg___wbindgen_is_string_fc456fee5d3317de: function(arg0) {
                const ret = typeof(arg0) === 'string';
                return ret;
            },
            __wbg___wbindgen_is_undefined_be5b34249ff1fc15: function(arg0) {
                const ret = arg0 === undefined;
                return ret;
            },
            __wbg___wbindgen_memory_17a1178bc3328ea3: function() {
                const ret = wasm.memory;
                return ret;
            },
            __wbg___wbindgen_throw_4c88d8bf264fd984: function(arg0, arg1) {
                throw new Error(getStringFromWasm0(arg0, arg1));
            },
            __wbg_call_a410eb4b59ed5965: function() { return handleError(function (arg0, arg1, arg2) {
                const ret = arg0.call(arg1, arg2);
                return ret;
            }, arguments); },
            __wbg_crypto_23f565a907d30078: function(arg0) {
                const ret = arg0.crypto;
                return ret;
            },
            __wbg_getRandomValues_8b6f1f663e6f188d: function() { return handleError(function (arg0, arg1) {
                globalThis.crypto.getRandomValues(getArrayU8FromWasm0(arg0, arg1));
            }, arguments); },
            __wbg_getRandomValues_d2908e0b99612b91: function() { return handleError(function (arg0, arg1) {
                arg0.getRandomValues(arg1);
            }, arguments); },
            __wbg_length_186163212ffe79c3: function(arg0) {
                const ret = arg0.length;
                return ret;
            },
            __wbg_msCrypto_d5f06fad6bf1409b: function(arg0) {
                const ret = arg0.msCrypto;
                return ret;
            },
            __wbg_new_with_length_01b143a7e5dd5a3e: function(arg0) {
                const ret = new Uint8Array(arg0 >>> 0);
                return ret;
            },
            __wbg_node_86166ff8ce1f2002: function(arg0) {
                const ret = arg0.node;
                return ret;
            },
            __wbg_process_91f425a63f58e399: function(arg0) {
                const ret = arg0.process;
                return ret;
            },
            __wbg_prototypesetcall_13162965d1fe7aa3: function(arg0, arg1, arg2) {
                Uint8Array.prototype.set.call(getArrayU8FromWasm0(arg0, arg1), arg2);
            },
            __wbg_randomFillSync_34b023059e3363de: function() { return handleError(function (arg0, arg1) {
                arg0.randomFillSync(arg1);
            }, arguments); },
            __wbg_require_9a7d8cc2e1d275c0: function() { return handleError(function () {
                const ret = module.require;
                return ret;
            }, arguments); },
            __wbg_static_accessor_GLOBAL_THIS_003ee833af9699fc: function() {
                const ret = typeof globalThis === 'undefined' ? undefined : globalThis;
                return isLikeNone(ret) ? 0 : addToExternrefTable0(ret);
            },
            __wbg_static_accessor_GLOBAL_e4293fb22cbe77da: function() {
                const ret = typeof global === 'undefined' ? undefined : global;
                return isLikeNone(ret) ? 0 : addToExternrefTable0(ret);
            },
            __wbg_static_accessor_SELF_53bb20457401453d: function() {
                const ret = typeof self === 'undefined' ? undefined : self;
                return isLikeNone(ret) ? 0 : addToExternrefTable0(ret);
            },
            __wbg_static_accessor_WINDOW_b5e0810bfecb7feb: function() {
                const ret = typeof window === 'undefined' ? undefined : window;
                return isLikeNone(ret) ? 0 : addToExternrefTable0(ret);
            },
            __wbg_subarray_58f388a9247ac0bb: function(arg0, arg1, arg2) {
                const ret = arg0.subarray(arg1 >>> 0, arg2 >>> 0);
                return ret;
            },
            __wbg_versions_6e128a981b0df859: function(arg0) {
                const ret = arg0.versions;
                return ret;
            },
            __wbindgen_generic_0000000000000001: function(arg0, arg1) {
                // Cast intrinsic for `Ref(Slice(U8)) -> NamedExternref("Uint8Array")`.
                const ret = getArrayU8FromWasm0(arg0, arg1);
                return ret;
            },
            __wbindgen_generic_0000000000000002: function(arg0, arg1) {
                // Cast intrinsic for `Ref(String) -> Externref`.
                const ret = getStringFromWasm0(arg0, arg1);
                return ret;
            },
            __wbindgen_init_externref_table: function() {
                const table = wasm.__wbindgen_externrefs;
                table.set(0, undefined);
                table.set(1024, undefined);
                table.set(1025, null);
                table.set(1026, true);
                table.set(1027, false);
            },
        };
        return {
            __proto__: null,
            "./duet_web_bg.js": import0,
        };
    }

    const DigestFinalization = (typeof FinalizationRegistry === 'undefined')
        ? { register: () => {}, unregister: () => {} }
        : new FinalizationRegistry(ptr => wasm.__wbg_digest_free(ptr, 1));
    const TransferFinalization = (typeof FinalizationRegistry === 'undefined')
        ? { register: () => {}, unregister: () => {} }
        : new FinalizationRegistry(ptr => wasm.__wbg_transfer_free(ptr, 1));
    const UnzipFinalization = (typeof FinalizationRegistry === 'undefined')
        ? { register: () => {}, unregister: () => {} }
        : new FinalizationRegistry(ptr => wasm.__wbg_unzip_free(ptr, 1));
    const WormholeFinalization = (typeof FinalizationRegistry === 'undefined')
        ? { register: () => {}, unregister: () => {} }
        : new FinalizationRegistry(ptr => wasm.__wbg_wormhole_free(ptr, 1));
    const ZipOutFinalization = (typeof FinalizationRegistry === 'undefined')
        ? { register: () => {}, unregister: () => {} }
        : new FinalizationRegistry(ptr => wasm.__wbg_zipout_free(ptr, 1));

    function addToExternrefTable0(obj) {
        const idx = wasm.__externref_table_alloc();
        wasm.__wbindgen_externrefs.set(idx, obj);
        return idx;
    }

    function getArrayF64FromWasm0(ptr, len) {
        ptr = ptr >>> 0;
        return getFloat64ArrayMemory0().subarray(ptr / 8, ptr / 8 + len);
    }

    function getArrayU8FromWasm0(ptr, len) {
        ptr = ptr >>> 0;
        return getUint8ArrayMemory0().subarray(ptr / 1, ptr / 1 + len);
    }

    let cachedFloat64ArrayMemory0 = null;
    function getFloat64ArrayMemory0() {
        if (cachedFloat64ArrayMemory0 === null || cachedFloat64ArrayMemory0.byteLength === 0) {
            cachedFloat64ArrayMemory0 = new Float64Array(wasm.memory.buffer);
        }
        return cachedFloat64ArrayMemory0;
    }

    function getStringFromWasm0(ptr, len) {
        ptr = ptr >>> 0;
        return decodeText(getUint8ArrayMemory0().subarray(ptr, ptr + len));
    }

    let cachedUint8ArrayMemory0 = null;
    function getUint8ArrayMemory0() {
        if (cachedUint8ArrayMemory0 === null || cachedUint8ArrayMemory0.byteLength === 0) {
            cachedUint8ArrayMemory0 = new Uint8Array(wasm.memory.buffer);
        }
        return cachedUint8ArrayMemory0;
    }

    function handleError(f, args) {
        try {
            return f.apply(this, args);
        } catch (e) {
            const idx = addToExternrefTable0(e);
            wasm.__wbindgen_exn_store(idx);
        }
    }

    function isLikeNone(x) {
        return x === undefined || x === null;
    }

    function passArray8ToWasm0(arg, malloc) {
        const ptr = malloc(arg.length * 1, 1) >>> 0;
        getUint8ArrayMemory0().set(arg, ptr / 1);
        WASM_VECTOR_LEN = arg.length;
        return ptr;
    }

    function passStringToWasm0(arg, malloc, realloc) {
        if (realloc === undefined) {
            const buf = cachedTextEncoder.encode(arg);
            const ptr = malloc(buf.length, 1) >>> 0;
            getUint8ArrayMemory0().subarray(ptr, ptr + buf.length).set(buf);
            WASM_VECTOR_LEN = buf.length;
            return ptr;
        }

        let len = arg.length;
        let ptr = malloc(len, 1) >>> 0;

        const mem = getUint8ArrayMemory0();

        let offset = 0;

        for (; offset < len; offset++) {
            const code = arg.charCodeAt(offset);
            if (code > 0x7F) break;
            mem[ptr + offset] = code;
        }
        if (offset !== len) {
            if (offset !== 0) {
                arg = arg.slice(offset);
            }
            ptr = realloc(ptr, len, len = offset + arg.length * 3, 1) >>> 0;
            const view = getUint8ArrayMemory0().subarray(ptr + offset, ptr + len);
            const ret = cachedTextEncoder.encodeInto(arg, view);

            offset += ret.written;
            ptr = realloc(ptr, len, offset, 1) >>> 0;
        }

        WASM_VECTOR_LEN = offset;
        return ptr;
    }

    function takeFromExternrefTable0(idx) {
        const value = wasm.__wbindgen_externrefs.get(idx);
        wasm.__externref_table_dealloc(idx);
        return value;
    }

    let cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
    cachedTextDecoder.decode();
    function decodeText(bytes) {
        return cachedTextDecoder.decode(bytes);
    }

    const cachedTextEncoder = new TextEncoder();

    if (!('encodeInto' in cachedTextEncoder)) {
        cachedTextEncoder.encodeInto = function (arg, view) {
            const buf = cachedTextEncoder.encode(arg);
            view.set(buf);
            return {
                read: arg.length,
                written: buf.length
            };
        };
    }

    let WASM_VECTOR_LEN = 0;

    let wasmModule, wasmInstance, wasm;
    function __wbg_finalize_init(instance, module) {
        wasmInstance = instance;
        wasm = instance.exports;
        wasmModule = module;
        cachedFloat64ArrayMemory0 = null;
        cachedUint8ArrayMemory0 = null;
        wasm.__wbindgen_start();
        return wasm;
    }

    async function __wbg_load(module, imports) {
        if (typeof Response === 'function' && module instanceof Response) {
            if (!module.ok) {
                throw new Error(`failed to fetch Wasm: ${module.status} ${module.statusText} fetching '${module.url}'`);
            }

            if (typeof WebAssembly.instantiateStreaming === 'function') {
                try {
                    return await WebAssembly.instantiateStreaming(module, imports);
                } catch (e) {
                    const validResponse = expectedResponseType(module.type);

                    if (validResponse && module.headers.get('Content-Type') !== 'application/wasm') {
                        console.warn("`WebAssembly.instantiateStreaming` failed because your server does not serve Wasm with `application/wasm` MIME type. Falling back to `WebAssembly.instantiate` which is slower. Original error:\n", e);

                    } else { throw e; }
                }
            }

            const bytes = await module.arrayBuffer();
            return await WebAssembly.instantiate(bytes, imports);
        } else {
            const instance = await WebAssembly.instantiate(module, imports);

            if (instance instanceof WebAssembly.Instance) {
                return { instance, module };
            } else {
                return instance;
            }
        }

        function expectedResponseType(type) {
            switch (type) {
                case 'basic': case 'cors': case 'default': return true;
            }
            return false;
        }
    }

    function initSync(module) {
        if (wasm !== undefined) return wasm;


        if (module !== undefined) {
            if (Object.getPrototypeOf(module) === Object.prototype) {
                ({module} = module)
            } else {
                console.warn('using deprecated parameters for `initSync()`; pass a single object instead')
            }
        }

        const imports = __wbg_get_imports();
        if (!(module instanceof WebAssembly.Module)) {
            module = new WebAssembly.Module(module);
        }
        const instance = new WebAssembly.Instance(module, imports);
        return __wbg_finalize_init(instance, module);
    }

    let __wbg_init_promise;
    async function __wbg_init(module_or_path) {
        if (wasm !== undefined) return wasm;
        if (__wbg_init_promise === undefined) {
            __wbg_init_promise = __wbg_init_once(module_or_path);
            __wbg_init_promise.catch(() => { __wbg_init_promise = undefined; });
        }
        return __wbg_init_promise;
    }

    async function __wbg_init_once(module_or_path) {

        if (module_or_path !== undefined) {
            if (Object.getPrototypeOf(module_or_path) === Object.prototype) {
                ({module_or_path} = module_or_path)
            } else {
                console.warn('using deprecated parameters for the initialization function; pass a single object instead')
            }
        }

        if (module_or_path === undefined && script_src !== undefined) {
            module_or_path = script_src.replace(/\.js$/, "_bg.wasm");
        }
        const imports = __wbg_get_imports();

        if (typeof module_or_path === 'string' || (typeof Request === 'function' && module_or_path instanceof Request) || (typeof URL === 'function' && module_or_path instanceof URL)) {
            module_or_path = fetch(module_or_path);
        }

        const { instance, module } = await __wbg_load(await module_or_path, imports);

        return __wbg_finalize_init(instance, module);
    }

    return Object.assign(__wbg_init, { initSync }, exports);
})({ __proto__: null });
