// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * The card's AXI-Lite register blocks (riskgw/card/regmap.py, generated into rgw_card_pkg):
 *
 *   0x0000 ID          magic, ABI, git hash, build parameters
 *   0x0100 CONTROL     CONTROL, STATUS, EXCH_SESSION, HEARTBEAT, CYCLES
 *   0x0200 COUNTERS    per flow (N_FLOW x 64 bits), per rule (RULES x 64 bits)
 *   0x1000 DOE         the DOE load port: ADDR, DATA, CMD, CMD_DONE, RDATA, LOAD_ROW registers
 *   0x2000 TIMESTAMPS  WRITTEN, SIZE, RING of TS_RING records of 4 words
 *
 * Each block starts with TYPE_VERSION and NEXT.  Reading the low word of a counter or of CYCLES
 * latches its high word, which a read of the high word returns.  Full-word writes only (wstrb is
 * not used); unknown addresses read 0 and ignore writes.
 *
 * A DOE command (WRITE, READ, LOAD_ROW) runs in the background after its B response; a further
 * write waits until it completes.  A READ of STATUS asks the DOE for its index-full / table-full
 * flags through the load port, so it waits for the event in flight, like a command; while the DOE
 * clears its tables after a reset STATUS answers at once with DOE_BUSY set.
 * CONTROL.RESET holds `soft_rst` (the DOE and the data path) for 8 cycles and clears the
 * counters, CMD_DONE, the sticky STATUS bits and the timestamp ring; ENABLE and EXCH_SESSION keep
 * their values.
 */
module rgw_card_regs #(
    // TOE stream width, for the ID block
    parameter int DATA_W = 64,
    // DOE parameters, for the ID block (see rgw_doe)
    parameter int LANES = 8,
    parameter int REGS = 256,
    parameter int PROG_ROWS = 256,
    parameter int TABLES = 8,
    parameter int COLS = 16,
    parameter int ROWS = 1024,
    parameter int KEY_WORDS = 6,
    parameter int WAYS = 4,
    parameter int SCANS = 16,
    parameter int RULES = 64,
    parameter int IN_WORDS = 16,
    // the clock the build is timed for, in MHz
    parameter int CLOCK_MHZ = 250,
    // the build's git commit
    parameter logic [159:0] GIT_HASH = '0
) (
    input  wire logic                          clk,
    input  wire logic                          rst,

    input  wire logic [15:0]                   s_axil_awaddr,
    input  wire logic [2:0]                    s_axil_awprot,
    input  wire logic                          s_axil_awvalid,
    output wire logic                          s_axil_awready,
    input  wire logic [31:0]                   s_axil_wdata,
    input  wire logic [3:0]                    s_axil_wstrb,
    input  wire logic                          s_axil_wvalid,
    output wire logic                          s_axil_wready,
    output wire logic [1:0]                    s_axil_bresp,
    output wire logic                          s_axil_bvalid,
    input  wire logic                          s_axil_bready,
    input  wire logic [15:0]                   s_axil_araddr,
    input  wire logic [2:0]                    s_axil_arprot,
    input  wire logic                          s_axil_arvalid,
    output wire logic                          s_axil_arready,
    output wire logic [31:0]                   s_axil_rdata,
    output wire logic [1:0]                    s_axil_rresp,
    output wire logic                          s_axil_rvalid,
    input  wire logic                          s_axil_rready,

    output wire logic                          enable,
    output wire logic [15:0]                   exch_session,
    output wire logic                          soft_rst,
    output wire logic [63:0]                   cycle,

    // DOE load port
    output wire logic                          m_cfg_valid,
    input  wire logic                          m_cfg_ready,
    output wire logic                          m_cfg_write,
    output wire logic [31:0]                   m_cfg_addr,
    output wire logic [63:0]                   m_cfg_data,
    input  wire logic                          cfg_rd_valid,
    input  wire logic [63:0]                   cfg_rd_data,

    // LOAD events (LOAD_ROW) and the end of their decision
    output wire logic                          load_valid,
    input  wire logic                          load_ready,
    output wire logic [7:0]                    load_table,
    output wire logic [IN_WORDS-1:0]           load_nulls,
    output wire logic [IN_WORDS*64-1:0]        load_data,
    input  wire logic                          load_done,

    // counting
    input  wire logic [rgw_card_pkg::N_FLOW-1:0] flow_inc,
    input  wire logic [RULES-1:0]              rule_inc,
    input  wire logic                          ts_valid,
    input  wire logic [31:0]                   ts_seq,
    input  wire logic [15:0]                   ts_session,
    input  wire logic [31:0]                   ts_rx,
    input  wire logic [31:0]                   ts_tx
);

import rgw_card_pkg::*;

localparam int CL_TS = $clog2(TS_RING);

initial begin
    if (RULES > MAX_RULES) $fatal(1, "rgw_card_regs: RULES exceeds the rule counters of the map");
end

// Waiver: the protection bits and byte strobes are not used (full-word registers).
/* verilator lint_off UNUSEDSIGNAL */
logic [2:0] unused_prot;
logic [3:0] unused_strb;
assign unused_prot = s_axil_awprot | s_axil_arprot;
assign unused_strb = s_axil_wstrb;
/* verilator lint_on UNUSEDSIGNAL */

// ---------------------------------------------------------------- state

logic [63:0]  cycle_reg;
logic         enable_reg;
logic [15:0]  exch_reg;
logic [3:0]   srst_reg;         // cycles of soft reset left
logic         busy_reg;         // the DOE is clearing its tables (its load port is not ready yet)
logic         sticky_index_reg;
logic         sticky_table_reg;
logic         sticky_proto_reg;
logic [63:0]  flow_reg [N_FLOW];
logic [63:0]  rule_reg [RULES];
logic [31:0]  hi_latch_reg;

logic [31:0]  doe_addr_reg;
logic [63:0]  doe_data_reg;
logic [31:0]  cmd_done_reg;
logic [63:0]  rdata64_reg;
logic [7:0]   row_table_reg;
logic [31:0]  row_nulls_reg;
logic [31:0]  row_words_reg [N_DOE_ROW_WORDS];

logic [127:0] ts_mem [TS_RING];
logic [31:0]  ts_written_reg;

assign cycle = cycle_reg;
assign enable = enable_reg;
assign exch_session = exch_reg;
assign soft_rst = rst || srst_reg != 0;

// ---------------------------------------------------------------- DOE command engine

typedef enum logic [2:0] {
    C_IDLE,
    C_CFG,       // load-port access offered
    C_RDWAIT,    // read accepted, waiting for the data
    C_LOAD,      // LOAD event offered
    C_LOADWAIT   // LOAD accepted, waiting for its decision
} cmd_t;

cmd_t         c_state_reg;
logic         c_write_reg;
logic         c_stat_reg;       // the access is the STATUS read of region 0 index 2
logic         c_stat_done;

assign m_cfg_valid = c_state_reg == C_CFG;
assign m_cfg_write = c_write_reg;
assign m_cfg_addr = c_stat_reg ? 32'h0000_0002 : doe_addr_reg;
assign m_cfg_data = doe_data_reg;
assign load_valid = c_state_reg == C_LOAD;
assign load_table = row_table_reg;
genvar gw;
generate
    for (gw = 0; gw < IN_WORDS; gw++) begin : g_row
        if (gw < ROW_WORDS) begin : g_word
            assign load_data[gw*64 +: 64] = {row_words_reg[2*gw+1], row_words_reg[2*gw]};
            assign load_nulls[gw] = row_nulls_reg[gw];
        end else begin : g_none
            assign load_data[gw*64 +: 64] = '0;
            assign load_nulls[gw] = 1'b1;
        end
    end
endgenerate

// ---------------------------------------------------------------- AXI-Lite

typedef enum logic [1:0] {
    A_IDLE,
    A_WRESP,
    A_RSTAT,
    A_RRESP
} axi_t;

axi_t         a_state_reg;
logic [31:0]  rdata_reg;
logic         stat_started_reg;

logic do_write;
logic do_read;
assign do_write = a_state_reg == A_IDLE && s_axil_awvalid && s_axil_wvalid && c_state_reg == C_IDLE
    && srst_reg == 0;
assign do_read = a_state_reg == A_IDLE && !do_write && s_axil_arvalid;
assign s_axil_awready = do_write;
assign s_axil_wready = do_write;
assign s_axil_bvalid = a_state_reg == A_WRESP;
assign s_axil_bresp = 2'b00;
assign s_axil_arready = do_read;
assign s_axil_rvalid = a_state_reg == A_RRESP;
assign s_axil_rdata = rdata_reg;
assign s_axil_rresp = 2'b00;

logic [4:0] status_now;
assign status_now = {enable_reg && !busy_reg, sticky_proto_reg, sticky_table_reg, sticky_index_reg, busy_reg};

// the 64-bit value whose low word is at `a`, for counters and CYCLES (valid when is64)
logic        rd_is64;
logic [63:0] rd_val64;
logic [31:0] rd_val;
logic [15:0] ra;
assign ra = s_axil_araddr;

always_comb begin
    logic [15:0] off;
    rd_is64 = 1'b0;
    rd_val64 = '0;
    rd_val = '0;
    off = '0;
    case (ra)
        ID_BASE: rd_val = ID_TYPE_VERSION;
        ID_BASE + 16'h4: rd_val = 32'(CONTROL_BASE);
        ADDR_ID_MAGIC: rd_val = CARD_MAGIC;
        ADDR_ID_ABI_VERSION: rd_val = 32'(rgw_isa_pkg::ABI_VERSION);
        ADDR_ID_DATA_W: rd_val = 32'(DATA_W);
        ADDR_ID_LANES: rd_val = 32'(LANES);
        ADDR_ID_TABLES: rd_val = 32'(TABLES);
        ADDR_ID_COLS: rd_val = 32'(COLS);
        ADDR_ID_ROWS_LOG2: rd_val = 32'($clog2(ROWS));
        ADDR_ID_RULES: rd_val = 32'(RULES);
        ADDR_ID_REGS: rd_val = 32'(REGS);
        ADDR_ID_PROG_ROWS: rd_val = 32'(PROG_ROWS);
        ADDR_ID_CLOCK_MHZ: rd_val = 32'(CLOCK_MHZ);
        ADDR_ID_KEY_WORDS: rd_val = 32'(KEY_WORDS);
        ADDR_ID_WAYS: rd_val = 32'(WAYS);
        ADDR_ID_SCANS: rd_val = 32'(SCANS);
        ADDR_ID_IN_WORDS: rd_val = 32'(IN_WORDS);
        CONTROL_BASE: rd_val = CONTROL_TYPE_VERSION;
        CONTROL_BASE + 16'h4: rd_val = 32'(COUNTERS_BASE);
        ADDR_CONTROL_CONTROL: rd_val = 32'(enable_reg);
        ADDR_CONTROL_STATUS: rd_val = 32'(status_now);
        ADDR_CONTROL_EXCH_SESSION: rd_val = 32'(exch_reg);
        ADDR_CONTROL_HEARTBEAT: rd_val = cycle_reg[HEARTBEAT_SHIFT +: 32];
        ADDR_CONTROL_CYCLES: begin
            rd_is64 = 1'b1;
            rd_val64 = cycle_reg;
        end
        ADDR_CONTROL_CYCLES + 16'h4: rd_val = hi_latch_reg;
        COUNTERS_BASE: rd_val = COUNTERS_TYPE_VERSION;
        COUNTERS_BASE + 16'h4: rd_val = 32'(DOE_BASE);
        ADDR_COUNTERS_N_FLOW: rd_val = 32'(N_FLOW);
        ADDR_COUNTERS_N_RULE: rd_val = 32'(RULES);
        DOE_BASE: rd_val = DOE_TYPE_VERSION;
        DOE_BASE + 16'h4: rd_val = 32'(TIMESTAMPS_BASE);
        ADDR_DOE_ADDR: rd_val = doe_addr_reg;
        ADDR_DOE_DATA: rd_val = doe_data_reg[31:0];
        ADDR_DOE_DATA + 16'h4: rd_val = doe_data_reg[63:32];
        ADDR_DOE_CMD_DONE: rd_val = cmd_done_reg;
        ADDR_DOE_RDATA: rd_val = rdata64_reg[31:0];
        ADDR_DOE_RDATA + 16'h4: rd_val = rdata64_reg[63:32];
        ADDR_DOE_ROW_TABLE: rd_val = 32'(row_table_reg);
        ADDR_DOE_ROW_NULLS: rd_val = row_nulls_reg;
        TIMESTAMPS_BASE: rd_val = TIMESTAMPS_TYPE_VERSION;
        TIMESTAMPS_BASE + 16'h4: rd_val = 32'h0;
        ADDR_TIMESTAMPS_WRITTEN: rd_val = ts_written_reg;
        ADDR_TIMESTAMPS_SIZE: rd_val = 32'(TS_RING);
        default: begin
            if (ra >= ADDR_ID_GIT_HASH && ra < ADDR_ID_GIT_HASH + 16'(4 * N_ID_GIT_HASH)) begin
                off = (ra - ADDR_ID_GIT_HASH) >> 2;
                rd_val = GIT_HASH[(N_ID_GIT_HASH - 1 - 32'(off)) * 32 +: 32];
            end else if (ra >= ADDR_COUNTERS_FLOW && ra < ADDR_COUNTERS_FLOW + 16'(4 * N_COUNTERS_FLOW)) begin
                off = (ra - ADDR_COUNTERS_FLOW) >> 3;
                if (ra[2]) begin
                    rd_val = hi_latch_reg;
                end else begin
                    rd_is64 = 1'b1;
                    rd_val64 = flow_reg[off[$clog2(N_FLOW)-1:0]];
                end
            end else if (ra >= ADDR_COUNTERS_RULE && ra < ADDR_COUNTERS_RULE + 16'(4 * N_COUNTERS_RULE)) begin
                off = (ra - ADDR_COUNTERS_RULE) >> 3;
                if (ra[2]) begin
                    rd_val = hi_latch_reg;
                end else if (32'(off) < RULES) begin
                    rd_is64 = 1'b1;
                    rd_val64 = rule_reg[off[(RULES > 1 ? $clog2(RULES) : 1)-1:0]];
                end
            end else if (ra >= ADDR_DOE_ROW_WORDS && ra < ADDR_DOE_ROW_WORDS + 16'(4 * N_DOE_ROW_WORDS)) begin
                off = (ra - ADDR_DOE_ROW_WORDS) >> 2;
                rd_val = row_words_reg[off[$clog2(N_DOE_ROW_WORDS)-1:0]];
            end else if (ra >= ADDR_TIMESTAMPS_RING && ra < ADDR_TIMESTAMPS_RING + 16'(4 * N_TIMESTAMPS_RING)) begin
                off = (ra - ADDR_TIMESTAMPS_RING) >> 4;
                rd_val = ts_mem[off[CL_TS-1:0]][32'(ra[3:2]) * 32 +: 32];
            end
        end
    endcase
    if (rd_is64) rd_val = rd_val64[31:0];
end

logic [15:0] wa;
logic [31:0] wd;
assign wa = s_axil_awaddr;
assign wd = s_axil_wdata;

always_ff @(posedge clk) begin
    cycle_reg <= cycle_reg + 1;
    if (srst_reg != 0) srst_reg <= srst_reg - 1;

    // ---- AXI-Lite
    case (a_state_reg)
        A_IDLE: begin
            if (do_write) begin
                a_state_reg <= A_WRESP;
                case (wa)
                    ADDR_CONTROL_CONTROL: begin
                        enable_reg <= wd[CONTROL_ENABLE_BIT];
                        if (wd[CONTROL_RESET_BIT]) srst_reg <= 4'd8;
                    end
                    ADDR_CONTROL_STATUS: begin
                        if (wd[STATUS_INDEX_FULL_BIT]) sticky_index_reg <= 1'b0;
                        if (wd[STATUS_TABLE_FULL_BIT]) sticky_table_reg <= 1'b0;
                        if (wd[STATUS_PROTOCOL_ERROR_BIT]) sticky_proto_reg <= 1'b0;
                    end
                    ADDR_CONTROL_EXCH_SESSION: exch_reg <= wd[15:0];
                    ADDR_DOE_ADDR: doe_addr_reg <= wd;
                    ADDR_DOE_DATA: doe_data_reg[31:0] <= wd;
                    ADDR_DOE_DATA + 16'h4: doe_data_reg[63:32] <= wd;
                    ADDR_DOE_ROW_TABLE: row_table_reg <= wd[7:0];
                    ADDR_DOE_ROW_NULLS: row_nulls_reg <= wd;
                    ADDR_DOE_CMD: begin
                        c_stat_reg <= 1'b0;
                        if (wd == 32'(DOE_CMD_WRITE) || wd == 32'(DOE_CMD_READ)) begin
                            c_write_reg <= wd == 32'(DOE_CMD_WRITE);
                            c_state_reg <= C_CFG;
                        end else if (wd == 32'(DOE_CMD_LOAD_ROW)) begin
                            c_state_reg <= C_LOAD;
                        end
                    end
                    default: begin
                        if (wa >= ADDR_DOE_ROW_WORDS && wa < ADDR_DOE_ROW_WORDS + 16'(4 * N_DOE_ROW_WORDS)) begin
                            row_words_reg[5'((wa - ADDR_DOE_ROW_WORDS) >> 2)] <= wd;
                        end
                    end
                endcase
            end else if (do_read) begin
                rdata_reg <= rd_val;
                if (rd_is64) hi_latch_reg <= rd_val64[63:32];
                stat_started_reg <= 1'b0;
                a_state_reg <= ra == ADDR_CONTROL_STATUS && !busy_reg ? A_RSTAT : A_RRESP;
            end
        end
        A_WRESP: if (s_axil_bready) a_state_reg <= A_IDLE;
        A_RSTAT: begin
            if (!stat_started_reg && c_state_reg == C_IDLE) begin
                stat_started_reg <= 1'b1;
                c_stat_reg <= 1'b1;
                c_write_reg <= 1'b0;
                c_state_reg <= C_CFG;
            end else if (c_stat_done) begin
                rdata_reg <= 32'(status_now | {2'b00, cfg_rd_data[2:1], 1'b0});
                a_state_reg <= A_RRESP;
            end
        end
        A_RRESP: if (s_axil_rready) a_state_reg <= A_IDLE;
        default: a_state_reg <= A_IDLE;
    endcase

    // ---- DOE commands
    c_stat_done <= 1'b0;
    case (c_state_reg)
        C_CFG: begin
            if (m_cfg_ready) begin
                if (c_write_reg) begin
                    c_state_reg <= C_IDLE;
                    cmd_done_reg <= cmd_done_reg + 1;
                end else begin
                    c_state_reg <= C_RDWAIT;
                end
            end
        end
        C_RDWAIT: begin
            if (cfg_rd_valid) begin
                c_state_reg <= C_IDLE;
                if (c_stat_reg) begin
                    sticky_index_reg <= sticky_index_reg | cfg_rd_data[1];
                    sticky_table_reg <= sticky_table_reg | cfg_rd_data[2];
                    c_stat_done <= 1'b1;
                end else begin
                    rdata64_reg <= cfg_rd_data;
                    cmd_done_reg <= cmd_done_reg + 1;
                end
            end
        end
        C_LOAD: if (load_ready) c_state_reg <= C_LOADWAIT;
        C_LOADWAIT: begin
            if (load_done) begin
                c_state_reg <= C_IDLE;
                cmd_done_reg <= cmd_done_reg + 1;
            end
        end
        default: begin
        end
    endcase

    if (m_cfg_ready) busy_reg <= 1'b0;

    // ---- counters and stamps
    if (flow_inc[CNT_PROTOCOL_ERRORS]) sticky_proto_reg <= 1'b1;
    for (int i = 0; i < N_FLOW; i++) begin
        if (flow_inc[i]) flow_reg[i] <= flow_reg[i] + 1;
    end
    for (int i = 0; i < RULES; i++) begin
        if (rule_inc[i]) rule_reg[i] <= rule_reg[i] + 1;
    end
    if (ts_valid) begin
        ts_mem[ts_written_reg[CL_TS-1:0]] <= {ts_tx, ts_rx, 16'h0, ts_session, ts_seq};
        ts_written_reg <= ts_written_reg + 1;
    end

    if (soft_rst || (do_write && wa == ADDR_CONTROL_CONTROL && wd[CONTROL_CLEAR_COUNTERS_BIT])) begin
        for (int i = 0; i < N_FLOW; i++) flow_reg[i] <= '0;
        for (int i = 0; i < RULES; i++) rule_reg[i] <= '0;
    end
    if (soft_rst) begin
        busy_reg <= 1'b1;
        cmd_done_reg <= '0;
        ts_written_reg <= '0;
        sticky_index_reg <= 1'b0;
        sticky_table_reg <= 1'b0;
        sticky_proto_reg <= 1'b0;
        c_state_reg <= C_IDLE;
    end
    if (rst) begin
        cycle_reg <= '0;
        enable_reg <= 1'b0;
        exch_reg <= '0;
        srst_reg <= '0;
        a_state_reg <= A_IDLE;
        c_state_reg <= C_IDLE;
        c_stat_reg <= 1'b0;
        hi_latch_reg <= '0;
        doe_addr_reg <= '0;
        doe_data_reg <= '0;
        rdata64_reg <= '0;
        row_table_reg <= '0;
        row_nulls_reg <= '0;
    end
end

endmodule

`resetall
