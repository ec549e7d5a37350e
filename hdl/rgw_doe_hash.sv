// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Bucket index of a key for the DOE hash index (combinational).
 *
 * The key words are combined with a rotate/xor, mixed with two xor-shifts and folded down to
 * CL_BUCKETS bits by xor-ing CL_BUCKETS-bit chunks together. Key words at or beyond n_key are
 * ignored, so the same key hashes the same whatever the width of the key port.
 *
 *   x   = xor over i < n_key of rotl(key[i], 13 * i)
 *   x  ^= x >> 31;  x ^= x >> 17
 *   idx = xor of the CL_BUCKETS-bit chunks of x (the last chunk zero-extended)
 *
 * sim/doe_table/test_doe_table.py carries the same function in Python for its model.
 */
module rgw_doe_hash #(
    // key words of the key port
    parameter int KEY_WORDS = 6,
    // log2 of the buckets of one table's index
    parameter int CL_BUCKETS = 10
) (
    input  wire logic [KEY_WORDS*64-1:0]  key,
    input  wire logic [2:0]               n_key,
    output wire logic [CL_BUCKETS-1:0]    idx
);

localparam int CHUNKS = (64 + CL_BUCKETS - 1) / CL_BUCKETS;

logic [63:0] x;
logic [CHUNKS*CL_BUCKETS-1:0] padded;
logic [CL_BUCKETS-1:0] folded;

function automatic logic [63:0] rotl(input logic [63:0] v, input int n);
    int s;
    s = n % 64;
    return s == 0 ? v : (v << s) | (v >> (64 - s));
endfunction

always_comb begin
    x = '0;
    for (int i = 0; i < KEY_WORDS; i++) begin
        if (i < 32'(n_key)) begin
            x = x ^ rotl(key[i*64 +: 64], 13 * i);
        end
    end
    x = x ^ (x >> 31);
    x = x ^ (x >> 17);
    padded = '0;
    padded[63:0] = x;
    folded = '0;
    for (int c = 0; c < CHUNKS; c++) begin
        folded = folded ^ padded[c*CL_BUCKETS +: CL_BUCKETS];
    end
end

assign idx = folded;

endmodule

`resetall
