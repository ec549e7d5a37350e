// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * TOE tx side: turns the record at the head of the pending queue (in rx order) and, for an event,
 * its DOE decision into tx frames, one frame per tx packet (riskgw/card/regmap.py):
 *
 *   NEW passed           ACCEPTED (the rx frame, type 0x20) on its session, then the rx frame
 *                        itself (NEW_ORDER) on exch_session
 *   NEW failed           REJECTED reason RULE, n_failed, failed_mask, ts = rx stamp (64 bits)
 *   FILL / EXCH_REJECT / CANCELLED   the rx frame back on its session
 *   proto record         REJECTED reason PROTOCOL with the record's order_id / account_id
 *
 * Every frame carries the rx frame's seq.  REJECTED (64 bytes):
 *
 *   0 type 0x21 | 1 ver | 2 length 64 | 4 seq | 8 order_id | 16 account_id | 20 reason |
 *   22 n_failed | 24 failed_mask (32 bytes, RULES bits used) | 56 ts
 *
 * A frame is shifted out DATA_W bits per beat, tkeep contiguous, tlast on its last beat.  The
 * first beat of the ACCEPTED or REJECTED answer to a NEW makes a timestamp record.
 */
module rgw_card_tx #(
    // TOE stream data width in bits (a multiple of 64)
    parameter int DATA_W = 64,
    // session id (tuser) width
    parameter int SESSION_W = 16,
    // rules (width of the failed-rule mask, at most 256)
    parameter int RULES = 64
) (
    input  wire logic                          clk,
    input  wire logic                          rst,

    input  wire logic [63:0]                   cycle,
    input  wire logic [SESSION_W-1:0]          exch_session,

    // head of the pending queue
    input  wire logic                          s_valid,
    output wire logic                          s_ready,
    input  wire logic                          s_proto,
    input  wire logic [7:0]                    s_type,
    input  wire logic [SESSION_W-1:0]          s_session,
    input  wire logic [31:0]                   s_seq,
    input  wire logic [31:0]                   s_stamp,
    input  wire logic [63:0]                   s_order_id,
    input  wire logic [31:0]                   s_account_id,
    input  wire logic [rgw_proto_pkg::MAX_FRAME_BYTES*8-1:0] s_frame,

    // the decision of the event at the head
    input  wire logic                          dec_valid,
    output wire logic                          dec_ready,
    input  wire logic                          dec_accept,
    input  wire logic [RULES-1:0]              dec_failed,

    output wire logic [DATA_W-1:0]             m_axis_tdata,
    output wire logic [DATA_W/8-1:0]           m_axis_tkeep,
    output wire logic                          m_axis_tvalid,
    input  wire logic                          m_axis_tready,
    output wire logic                          m_axis_tlast,
    output wire logic [SESSION_W-1:0]          m_axis_tuser,

    // one cycle each: a NEW passed, failed, a protocol reject left the queue, a tx frame ended
    output logic                               cnt_accepted,
    output logic                               cnt_rejected,
    output logic                               cnt_protocol,
    output logic                               cnt_tx_frame,
    // rules failed by the decision taken this cycle (all zero otherwise)
    output logic [RULES-1:0]                   rule_fail,
    // timestamp record: the first tx beat of the answer to a NEW
    output logic                               ts_valid,
    output logic [31:0]                        ts_seq,
    output logic [SESSION_W-1:0]               ts_session,
    output logic [31:0]                        ts_rx,
    output logic [31:0]                        ts_tx
);

import rgw_proto_pkg::*;

localparam int DB = DATA_W / 8;
localparam int FB = MAX_FRAME_BYTES;
localparam int FW = FB * 8 > DATA_W ? FB * 8 : DATA_W;

localparam int MASK_BYTES = REJECTED_TS_OFF - REJECTED_FAILED_MASK_OFF;

initial begin
    if (RULES > 8 * MASK_BYTES) $fatal(1, "rgw_card_tx: RULES exceeds the failed_mask field");
    if (DATA_W % 64 != 0 || DATA_W < 64) $fatal(1, "rgw_card_tx: DATA_W must be a multiple of 64");
end

typedef enum logic [0:0] {
    ST_IDLE,
    ST_SEND
} state_t;

state_t                 state_reg;
logic [FW-1:0]          frm_reg;        // the frame being sent, shifted out a beat at a time
logic [7:0]             rem_reg;        // its bytes not yet sent
logic                   first_reg;      // the next beat is the frame's first
logic [SESSION_W-1:0]   sess_reg;
logic                   second_reg;     // the rx frame goes to the exchange next
logic [FB*8-1:0]        orig_reg;
logic                   ts_pend_reg;
logic [31:0]            ts_seq_reg;
logic [SESSION_W-1:0]   ts_sess_reg;
logic [31:0]            ts_rx_reg;

function automatic logic [FB*8-1:0] rejected(
    input logic [31:0] seq, input logic [63:0] order_id, input logic [31:0] account_id,
    input logic [15:0] reason, input logic [15:0] n_failed, input logic [RULES-1:0] failed,
    input logic [63:0] ts
);
    logic [FB*8-1:0] f;
    f = '0;
    f[7:0] = MSG_REJECTED;
    f[15:8] = 8'(PROTO_VERSION);
    f[31:16] = 16'(REJECTED_BYTES);
    f[63:32] = seq;
    f[REJECTED_ORDER_ID_OFF*8 +: 64] = order_id;
    f[REJECTED_ACCOUNT_ID_OFF*8 +: 32] = account_id;
    f[REJECTED_REASON_OFF*8 +: 16] = reason;
    f[REJECTED_N_FAILED_OFF*8 +: 16] = n_failed;
    f[REJECTED_FAILED_MASK_OFF*8 +: RULES] = failed;
    f[REJECTED_TS_OFF*8 +: 64] = ts;
    return f;
endfunction

// bytes of the frames the card sends back as they came (NEW_ORDER, FILL, EXCH_REJECT, CANCELLED)
function automatic logic [7:0] echo_bytes(input logic [7:0] t);
    return t == MSG_NEW_ORDER ? 8'(NEW_ORDER_BYTES) : 8'(FILL_BYTES);
endfunction

logic [15:0] n_failed;
always_comb begin
    n_failed = '0;
    for (int i = 0; i < RULES; i++) n_failed = n_failed + 16'(dec_failed[i]);
end

// the rx stamp widened to 64 bits with the current cycle's high word (it is < 2^32 cycles old)
logic [63:0] stamp64;
assign stamp64 = {cycle[63:32] - 32'(s_stamp > cycle[31:0]), s_stamp};

logic take_proto;
logic take_dec;
assign take_proto = state_reg == ST_IDLE && s_valid && s_proto;
assign take_dec = state_reg == ST_IDLE && s_valid && !s_proto && dec_valid;
assign s_ready = take_proto || take_dec;
assign dec_ready = take_dec;

logic beat;
logic last;
assign beat = m_axis_tvalid && m_axis_tready;
assign last = 32'(rem_reg) <= DB;

assign m_axis_tvalid = state_reg == ST_SEND;
assign m_axis_tdata = frm_reg[DATA_W-1:0];
assign m_axis_tlast = last;
assign m_axis_tuser = sess_reg;
// bytes of the beat that hold the frame (a procedural loop into a variable: an output net takes
// only continuous assignments)
logic [DB-1:0] keep;

always_comb begin
    for (int i = 0; i < DB; i++) keep[i] = i < 32'(rem_reg);
end

assign m_axis_tkeep = keep;

always_comb begin
    cnt_accepted = take_dec && s_type == MSG_NEW_ORDER && dec_accept;
    cnt_rejected = take_dec && s_type == MSG_NEW_ORDER && !dec_accept;
    cnt_protocol = take_proto;
    cnt_tx_frame = beat && last;
    rule_fail = take_dec ? dec_failed : '0;
    ts_valid = beat && first_reg && ts_pend_reg;
    ts_seq = ts_seq_reg;
    ts_session = ts_sess_reg;
    ts_rx = ts_rx_reg;
    ts_tx = cycle[31:0];
end

always_ff @(posedge clk) begin
    case (state_reg)
        ST_IDLE: begin
            first_reg <= 1'b1;
            sess_reg <= s_session;
            orig_reg <= s_frame;
            ts_seq_reg <= s_seq;
            ts_sess_reg <= s_session;
            ts_rx_reg <= s_stamp;
            second_reg <= 1'b0;
            ts_pend_reg <= 1'b0;
            if (take_proto) begin
                frm_reg <= FW'(rejected(s_seq, s_order_id, s_account_id, 16'(REASON_PROTOCOL), '0, '0,
                    stamp64));
                rem_reg <= 8'(REJECTED_BYTES);
                state_reg <= ST_SEND;
            end else if (take_dec) begin
                state_reg <= ST_SEND;
                ts_pend_reg <= s_type == MSG_NEW_ORDER;
                if (s_type != MSG_NEW_ORDER) begin
                    frm_reg <= FW'(s_frame);
                    rem_reg <= echo_bytes(s_type);
                end else if (dec_accept) begin
                    frm_reg <= FW'({s_frame[FB*8-1:8], MSG_ACCEPTED});
                    rem_reg <= 8'(ACCEPTED_BYTES);
                    second_reg <= 1'b1;
                end else begin
                    frm_reg <= FW'(rejected(s_seq, s_order_id, s_account_id, 16'(REASON_RULE), n_failed,
                        dec_failed, stamp64));
                    rem_reg <= 8'(REJECTED_BYTES);
                end
            end
        end
        ST_SEND: begin
            if (beat) begin
                first_reg <= 1'b0;
                if (first_reg) ts_pend_reg <= 1'b0;
                frm_reg <= frm_reg >> DATA_W;
                rem_reg <= rem_reg - 8'(DB);
                if (last) begin
                    if (second_reg) begin
                        second_reg <= 1'b0;
                        first_reg <= 1'b1;
                        frm_reg <= FW'(orig_reg);
                        rem_reg <= 8'(NEW_ORDER_BYTES);
                        sess_reg <= exch_session;
                    end else begin
                        state_reg <= ST_IDLE;
                    end
                end
            end
        end
        default: state_reg <= ST_IDLE;
    endcase

    if (rst) begin
        state_reg <= ST_IDLE;
        second_reg <= 1'b0;
        ts_pend_reg <= 1'b0;
    end
end

endmodule

`resetall
