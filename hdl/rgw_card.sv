// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * The card: the DOE behind a TCP-offload-engine interface and an AXI-Lite host port
 * (riskgw/card/regmap.py is the contract; docs/card.md draws it).
 *
 *   s_axis_rx ──► rgw_card_rx ──► record ──┬──► event ──► rgw_doe ──► decision ──┐
 *   (tuser = session)  frames, garbage,    │    (NEW/FILL/REJECT/CANCEL)          ▼
 *                      truncated frames    └──► pending queue (rx order) ──► rgw_card_tx ──► m_axis_tx
 *                                                                                (tuser = session)
 *   s_axil ──► rgw_card_regs: ID, CONTROL, COUNTERS, DOE load port / LOAD_ROW, TIMESTAMPS
 *
 * Event words (riskgw/doe/isa.py EventField) from a frame's fixed offsets:
 *
 *   0 order_id  @8 (i64)     1 account_id @16 (i32, sign-extended)   2,3 ticket_id @24 (16 bytes,
 *   two little-endian words) 4 direction @20 (u8)  5 price @40  6 quantity @48
 *   7 exec_price @64  8 exec_quantity @72 (NULL for a NEW_ORDER)     9 ts @56
 *   10.. NULL
 *
 * Event tags: a frame's event carries bit 31 clear; a LOAD_ROW from the register block carries
 * bit 31 set, and its decision goes back to the register block instead of the tx side.  Records
 * that the DOE does not run (protocol rejects) wait in the pending queue in rx order, so every
 * answer leaves in the order its frame came in.
 */
module rgw_card #(
    // TOE stream data width in bits (64 or 512 are tested)
    parameter int DATA_W = 64,
    // DOE parameters (see rgw_doe)
    parameter int LANES = 8,
    parameter int REGS = 256,
    parameter int PROG_ROWS = 256,
    parameter int TABLES = 8,
    parameter int COLS = 16,
    parameter int ROWS = 1024,
    parameter int KEY_WORDS = 6,
    parameter int CL_BUCKETS = $clog2(ROWS) + 1,
    parameter int WAYS = 4,
    parameter int SCANS = 16,
    parameter int RULES = 64,
    parameter int IN_WORDS = 16,
    parameter int DIV_BITS = 4,
    // the clock the build is timed for, in MHz (reported in the ID block)
    parameter int CLOCK_MHZ = 250,
    // the build's git commit (reported in the ID block)
    parameter logic [159:0] GIT_HASH = '0
) (
    input  wire logic                     clk,
    input  wire logic                     rst,

    input  wire logic [15:0]              s_axil_awaddr,
    input  wire logic [2:0]               s_axil_awprot,
    input  wire logic                     s_axil_awvalid,
    output wire logic                     s_axil_awready,
    input  wire logic [31:0]              s_axil_wdata,
    input  wire logic [3:0]               s_axil_wstrb,
    input  wire logic                     s_axil_wvalid,
    output wire logic                     s_axil_wready,
    output wire logic [1:0]               s_axil_bresp,
    output wire logic                     s_axil_bvalid,
    input  wire logic                     s_axil_bready,
    input  wire logic [15:0]              s_axil_araddr,
    input  wire logic [2:0]               s_axil_arprot,
    input  wire logic                     s_axil_arvalid,
    output wire logic                     s_axil_arready,
    output wire logic [31:0]              s_axil_rdata,
    output wire logic [1:0]               s_axil_rresp,
    output wire logic                     s_axil_rvalid,
    input  wire logic                     s_axil_rready,

    input  wire logic [DATA_W-1:0]        s_axis_rx_tdata,
    input  wire logic [DATA_W/8-1:0]      s_axis_rx_tkeep,
    input  wire logic                     s_axis_rx_tvalid,
    output wire logic                     s_axis_rx_tready,
    input  wire logic                     s_axis_rx_tlast,
    input  wire logic [15:0]              s_axis_rx_tuser,

    output wire logic [DATA_W-1:0]        m_axis_tx_tdata,
    output wire logic [DATA_W/8-1:0]      m_axis_tx_tkeep,
    output wire logic                     m_axis_tx_tvalid,
    input  wire logic                     m_axis_tx_tready,
    output wire logic                     m_axis_tx_tlast,
    output wire logic [15:0]              m_axis_tx_tuser
);

import rgw_isa_pkg::*;
import rgw_proto_pkg::*;
import rgw_card_pkg::*;

localparam int TAG_W = 32;
localparam int FB = MAX_FRAME_BYTES;
localparam int PEND = 4;  // pending queue depth: the DOE holds one event, the tx side one record
localparam int CL_PEND = $clog2(PEND);
// record: proto, type, session, seq, stamp, order_id, account_id, frame
localparam int REC_W = 1 + 8 + 16 + 32 + 32 + 64 + 32 + FB * 8;

initial begin
    if (DATA_W != 64 * (DATA_W / 64)) $fatal(1, "rgw_card: DATA_W must be a multiple of 64");
    if (IN_WORDS < N_EVENT_REGS) $fatal(1, "rgw_card: IN_WORDS must hold the order fields");
end

logic        soft_rst;
logic        enable;
logic [15:0] exch_session;
logic [63:0] cycle;

// ---------------------------------------------------------------- rx

logic              r_valid;
logic              r_ready;
logic              r_proto;
logic [7:0]        r_type;
logic [15:0]       r_session;
logic [31:0]       r_seq;
logic [31:0]       r_stamp;
logic [63:0]       r_order_id;
logic [31:0]       r_account_id;
logic [FB*8-1:0]   r_frame;
logic              rx_frame;

rgw_card_rx #(
    .DATA_W(DATA_W),
    .SESSION_W(16)
) rx_inst (
    .clk(clk),
    .rst(soft_rst),
    .enable(enable),
    .cycle(cycle[31:0]),
    .s_axis_tdata(s_axis_rx_tdata),
    .s_axis_tkeep(s_axis_rx_tkeep),
    .s_axis_tvalid(s_axis_rx_tvalid),
    .s_axis_tready(s_axis_rx_tready),
    .s_axis_tlast(s_axis_rx_tlast),
    .s_axis_tuser(s_axis_rx_tuser),
    .m_valid(r_valid),
    .m_ready(r_ready),
    .m_proto(r_proto),
    .m_type(r_type),
    .m_session(r_session),
    .m_seq(r_seq),
    .m_stamp(r_stamp),
    .m_order_id(r_order_id),
    .m_account_id(r_account_id),
    .m_frame(r_frame),
    .rx_frame(rx_frame)
);

// ---------------------------------------------------------------- frame -> event

rgw_doe_evt_if #(.IN_WORDS(IN_WORDS), .TAG_W(TAG_W)) evt ();
rgw_doe_dec_if #(.RULES(RULES), .TAG_W(TAG_W)) dec ();

logic [2:0]              r_kind;
logic [IN_WORDS*64-1:0]  r_data;
logic [IN_WORDS-1:0]     r_nulls;
always_comb begin
    case (r_type)
        MSG_FILL: r_kind = EVENT_FILL;
        MSG_EXCH_REJECT: r_kind = EVENT_REJECT;
        MSG_CANCELLED: r_kind = EVENT_CANCEL;
        default: r_kind = EVENT_NEW;
    endcase
    r_data = '0;
    r_nulls = '1;
    r_data[0*64 +: 64] = r_frame[NEW_ORDER_ORDER_ID_OFF*8 +: 64];
    r_data[1*64 +: 64] = 64'(signed'(r_frame[NEW_ORDER_ACCOUNT_ID_OFF*8 +: 32]));
    r_data[2*64 +: 128] = r_frame[NEW_ORDER_TICKET_ID_OFF*8 +: 128];
    r_data[4*64 +: 64] = 64'(r_frame[NEW_ORDER_DIRECTION_OFF*8 +: 8]);
    r_data[5*64 +: 64] = r_frame[NEW_ORDER_PRICE_OFF*8 +: 64];
    r_data[6*64 +: 64] = r_frame[NEW_ORDER_QUANTITY_OFF*8 +: 64];
    r_data[9*64 +: 64] = r_frame[NEW_ORDER_TS_OFF*8 +: 64];
    r_nulls[N_EVENT_REGS-1:0] = '0;
    if (r_type == MSG_NEW_ORDER) begin
        r_nulls[7] = 1'b1;
        r_nulls[8] = 1'b1;
    end else begin
        r_data[7*64 +: 64] = r_frame[FILL_EXEC_PRICE_OFF*8 +: 64];
        r_data[8*64 +: 64] = r_frame[FILL_EXEC_QUANTITY_OFF*8 +: 64];
    end
end

logic                    load_valid;
logic                    load_ready;
logic [7:0]              load_table;
logic [IN_WORDS-1:0]     load_nulls;
logic [IN_WORDS*64-1:0]  load_data;
logic                    load_done;

logic [REC_W-1:0] pend_mem [PEND];
logic [CL_PEND:0] pend_wr_reg;
logic [CL_PEND:0] pend_rd_reg;
logic             pend_full;
logic             pend_empty;
logic             pend_push;
logic             pend_pop;
logic [30:0]      tag_reg;
assign pend_full = pend_wr_reg - pend_rd_reg == (CL_PEND + 1)'(PEND);
assign pend_empty = pend_wr_reg == pend_rd_reg;

assign evt.valid = load_valid || (r_valid && !r_proto && !pend_full);
assign evt.tag = load_valid ? {1'b1, 31'd0} : {1'b0, tag_reg};
assign evt.kind = load_valid ? EVENT_LOAD : r_kind;
assign evt.table_id = load_table;
assign evt.nulls = load_valid ? load_nulls : r_nulls;
assign evt.data = load_valid ? load_data : r_data;
assign load_ready = load_valid && evt.ready;
assign r_ready = !pend_full && (r_proto || (!load_valid && evt.ready));
assign pend_push = r_valid && r_ready;

always_ff @(posedge clk) begin
    if (pend_push) begin
        pend_mem[pend_wr_reg[CL_PEND-1:0]] <= {r_proto, r_type, r_session, r_seq, r_stamp, r_order_id,
            r_account_id, r_frame};
        pend_wr_reg <= pend_wr_reg + 1;
        if (!r_proto) tag_reg <= tag_reg + 1;
    end
    if (pend_pop) pend_rd_reg <= pend_rd_reg + 1;
    if (soft_rst) begin
        pend_wr_reg <= '0;
        pend_rd_reg <= '0;
        tag_reg <= '0;
    end
end

// ---------------------------------------------------------------- DOE

logic        cfg_valid;
logic        cfg_ready;
logic        cfg_write;
logic [31:0] cfg_addr;
logic [63:0] cfg_data;
logic        cfg_rd_valid;
logic [63:0] cfg_rd_data;

rgw_doe #(
    .LANES(LANES),
    .REGS(REGS),
    .PROG_ROWS(PROG_ROWS),
    .TABLES(TABLES),
    .COLS(COLS),
    .ROWS(ROWS),
    .KEY_WORDS(KEY_WORDS),
    .CL_BUCKETS(CL_BUCKETS),
    .WAYS(WAYS),
    .SCANS(SCANS),
    .RULES(RULES),
    .IN_WORDS(IN_WORDS),
    .TAG_W(TAG_W),
    .DIV_BITS(DIV_BITS)
) doe_inst (
    .clk(clk),
    .rst(soft_rst),
    .s_cfg_valid(cfg_valid),
    .s_cfg_ready(cfg_ready),
    .s_cfg_write(cfg_write),
    .s_cfg_addr(cfg_addr),
    .s_cfg_data(cfg_data),
    .m_cfg_rd_valid(cfg_rd_valid),
    .m_cfg_rd_data(cfg_rd_data),
    .s_evt(evt),
    .m_dec(dec)
);

logic dec_is_load;
logic tx_dec_ready;
assign dec_is_load = dec.tag[TAG_W-1];
assign dec.ready = dec_is_load || tx_dec_ready;
assign load_done = dec.valid && dec_is_load;

// ---------------------------------------------------------------- tx

logic [REC_W-1:0] head;
assign head = pend_mem[pend_rd_reg[CL_PEND-1:0]];

logic             tx_accepted;
logic             tx_rejected;
logic             tx_protocol;
logic             tx_frame;
logic [RULES-1:0] rule_fail;
logic             ts_valid;
logic [31:0]      ts_seq;
logic [15:0]      ts_session;
logic [31:0]      ts_rx;
logic [31:0]      ts_tx;

rgw_card_tx #(
    .DATA_W(DATA_W),
    .SESSION_W(16),
    .RULES(RULES)
) tx_inst (
    .clk(clk),
    .rst(soft_rst),
    .cycle(cycle),
    .exch_session(exch_session),
    .s_valid(!pend_empty),
    .s_ready(pend_pop),
    .s_proto(head[REC_W-1]),
    .s_type(head[REC_W-2 -: 8]),
    .s_session(head[REC_W-10 -: 16]),
    .s_seq(head[REC_W-26 -: 32]),
    .s_stamp(head[REC_W-58 -: 32]),
    .s_order_id(head[REC_W-90 -: 64]),
    .s_account_id(head[REC_W-154 -: 32]),
    .s_frame(head[FB*8-1:0]),
    .dec_valid(dec.valid && !dec_is_load),
    .dec_ready(tx_dec_ready),
    .dec_accept(dec.accept),
    .dec_failed(dec.failed),
    .m_axis_tdata(m_axis_tx_tdata),
    .m_axis_tkeep(m_axis_tx_tkeep),
    .m_axis_tvalid(m_axis_tx_tvalid),
    .m_axis_tready(m_axis_tx_tready),
    .m_axis_tlast(m_axis_tx_tlast),
    .m_axis_tuser(m_axis_tx_tuser),
    .cnt_accepted(tx_accepted),
    .cnt_rejected(tx_rejected),
    .cnt_protocol(tx_protocol),
    .cnt_tx_frame(tx_frame),
    .rule_fail(rule_fail),
    .ts_valid(ts_valid),
    .ts_seq(ts_seq),
    .ts_session(ts_session),
    .ts_rx(ts_rx),
    .ts_tx(ts_tx)
);

// ---------------------------------------------------------------- registers

logic [N_FLOW-1:0] flow_inc;
logic              evt_frame;
assign evt_frame = evt.valid && evt.ready && !load_valid;
always_comb begin
    flow_inc = '0;
    flow_inc[CNT_RX_FRAMES] = rx_frame;
    flow_inc[CNT_NEW] = evt_frame && r_kind == EVENT_NEW;
    flow_inc[CNT_FILL] = evt_frame && r_kind == EVENT_FILL;
    flow_inc[CNT_REJECT] = evt_frame && r_kind == EVENT_REJECT;
    flow_inc[CNT_CANCEL] = evt_frame && r_kind == EVENT_CANCEL;
    flow_inc[CNT_ACCEPTED] = tx_accepted;
    flow_inc[CNT_REJECTED] = tx_rejected;
    flow_inc[CNT_PROTOCOL_ERRORS] = tx_protocol;
    flow_inc[CNT_TX_FRAMES] = tx_frame;
end

rgw_card_regs #(
    .DATA_W(DATA_W),
    .LANES(LANES),
    .REGS(REGS),
    .PROG_ROWS(PROG_ROWS),
    .TABLES(TABLES),
    .COLS(COLS),
    .ROWS(ROWS),
    .KEY_WORDS(KEY_WORDS),
    .WAYS(WAYS),
    .SCANS(SCANS),
    .RULES(RULES),
    .IN_WORDS(IN_WORDS),
    .CLOCK_MHZ(CLOCK_MHZ),
    .GIT_HASH(GIT_HASH)
) regs_inst (
    .clk(clk),
    .rst(rst),
    .s_axil_awaddr(s_axil_awaddr),
    .s_axil_awprot(s_axil_awprot),
    .s_axil_awvalid(s_axil_awvalid),
    .s_axil_awready(s_axil_awready),
    .s_axil_wdata(s_axil_wdata),
    .s_axil_wstrb(s_axil_wstrb),
    .s_axil_wvalid(s_axil_wvalid),
    .s_axil_wready(s_axil_wready),
    .s_axil_bresp(s_axil_bresp),
    .s_axil_bvalid(s_axil_bvalid),
    .s_axil_bready(s_axil_bready),
    .s_axil_araddr(s_axil_araddr),
    .s_axil_arprot(s_axil_arprot),
    .s_axil_arvalid(s_axil_arvalid),
    .s_axil_arready(s_axil_arready),
    .s_axil_rdata(s_axil_rdata),
    .s_axil_rresp(s_axil_rresp),
    .s_axil_rvalid(s_axil_rvalid),
    .s_axil_rready(s_axil_rready),
    .enable(enable),
    .exch_session(exch_session),
    .soft_rst(soft_rst),
    .cycle(cycle),
    .m_cfg_valid(cfg_valid),
    .m_cfg_ready(cfg_ready),
    .m_cfg_write(cfg_write),
    .m_cfg_addr(cfg_addr),
    .m_cfg_data(cfg_data),
    .cfg_rd_valid(cfg_rd_valid),
    .cfg_rd_data(cfg_rd_data),
    .load_valid(load_valid),
    .load_ready(load_ready),
    .load_table(load_table),
    .load_nulls(load_nulls),
    .load_data(load_data),
    .load_done(load_done),
    .flow_inc(flow_inc),
    .rule_inc(rule_fail),
    .ts_valid(ts_valid),
    .ts_seq(ts_seq),
    .ts_session(ts_session),
    .ts_rx(ts_rx),
    .ts_tx(ts_tx)
);

endmodule

`resetall
