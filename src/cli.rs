//! The command line: clap types only, no model or tensor types.

use std::path::PathBuf;

use std::ffi::OsString;

use clap::builder::PossibleValuesParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::render::Colormap;
use crate::ui::ColorChoice;
use crate::source::DEFAULT_MODEL;

const ABOUT: &str = "See what a transformer's attention heads look at: capture every head's softmax(QK^T/sqrt d) weights and draw them over your tokens.";

const LONG_ABOUT: &str = "\
See what a transformer's attention heads look at.

attnmap runs a pretrained model through candle, captures every head's
softmax(QK^T/sqrt d) weights (the same numbers transformers returns with
output_attentions=True) and draws the maps you ask for.

A map shows where one head's weights go; it says nothing about the values
those weights mix or how layers combine. With hundreds of heads, some map will
always seem to support a theory: look at many, and check before you conclude.";

const EXAMPLES: &str = "\
Examples:
  attnmap \"The WhirlyGigs arrived broken\" --layer 5 --head 3
  attnmap show --file review.txt --layer 0 --head 7 -o head7.png
  echo \"The cat sat\" | attnmap - --layer 2 --head 1 -o - > map.png
  attnmap dump \"The WhirlyGigs arrived broken\" --out maps/
  attnmap \"The WhirlyGigs arrived broken\" --layer 5 --head 3 --view norm
  attnmap dump \"The WhirlyGigs arrived broken\" --views all --words --out maps/
  attnmap diff old-dump/ new-dump/ --fail-above 0.01
  attnmap info --model ./my-bert-folder
  attnmap dump \"The year 2019 ended\" --model SmolLM2-135M-Instruct.Q4_1.gguf --out maps/
  attnmap view maps/                 (the interactive viewer: maps/view.html)
  attnmap \"The cat sat\" -l 2 -H 1 -o map.svg      (or .html; --format term prints it here)
  attnmap help dump
  attnmap completions bash > ~/.local/share/bash-completion/completions/attnmap

Layers and heads count from 0, as in transformers.
Exit status: 0 success, 1 when `diff` finds a head above --fail-above, 2 on a usage or input error.";

#[derive(Debug, Parser)]
#[command(name = "attnmap", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// Print nothing on stderr but errors and warnings.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Colour and progress bars: auto (on a terminal, unless NO_COLOR is set or CI=true), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Draw one head's map (the default: `attnmap TEXT --layer L --head H` means `attnmap show ...`).
    Show(ShowArgs),
    /// Write every head's map to a folder: attention.npy, manifest.json, heads/*.png, grid.png.
    Dump(DumpArgs),
    /// Compare the maps of two model versions, head by head; exit 1 past a threshold (for CI).
    Diff(DiffArgs),
    /// Describe a model: architecture, layers, heads, max positions, where it was loaded from.
    /// Reads config.json or the GGUF header only (instant); the weights are checked by show and dump.
    Info(InfoArgs),
    /// Write the interactive HTML viewer of a dump (every head; opens offline in any browser).
    View(ViewArgs),
    /// What every head does: entropy, weight on the first token, specials, punctuation, itself, neighbours.
    Heads(HeadsArgs),
    /// Which heads do X (previous-token, induction, your word pairs), with p- and q-values against chance.
    Find(FindArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) on stdout.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout: every subcommand, its examples, exit codes.
    Man(ManArgs),
}

/// Which model to load.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A Hugging Face repo id (read from the HF cache first; HF_HOME, HF_HUB_CACHE,
    /// HF_HUB_OFFLINE, HF_TOKEN and HF_ENDPOINT are honoured), a local model folder
    /// (config.json, tokenizer.json, model.safetensors or pytorch_model.bin), or a
    /// local .gguf file (llama architecture; its weights are dequantized to f32).
    #[arg(short, long, default_value = DEFAULT_MODEL, value_name = "ID|PATH")]
    pub model: String,

    /// Branch, tag or commit of a Hub model.
    #[arg(long, default_value = "main")]
    pub revision: String,

    /// For a .gguf model: run quantized matmuls on the file's blocks instead of
    /// dequantizing the weights to f32, for speed and a quarter of the memory; maps then
    /// differ slightly. candle has fast CPU kernels for Q4_0, Q8_0 and the K-quants only
    /// (a Q4_1 file runs slower than in f32).
    #[arg(long)]
    pub quantized: bool,
}

/// What text to run.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// The text to tokenize; '-' reads it from stdin.
    #[arg(value_name = "TEXT", required_unless_present = "file", conflicts_with = "file")]
    pub text: Option<String>,

    /// Read the text from a file instead.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// A second sentence, encoded as a pair (BERT's [SEP] and token_type_ids), as BERT was trained.
    #[arg(long, value_name = "TEXT")]
    pub pair: Option<String>,
}

/// How numbers become colours.
#[derive(Debug, Clone, Args)]
pub struct StyleArgs {
    /// Colormap of the heatmaps (perceptually uniform ones first).
    #[arg(long, default_value = "viridis", value_parser = PossibleValuesParser::new(Colormap::NAMES))]
    pub colormap: String,

    /// Colour range: `auto` spans 0 to each map's own maximum (faint patterns stay visible;
    /// the colour bar shows the range), `fixed` spans 0 to 1 (maps compare at a glance).
    #[arg(long, value_enum, default_value_t = ScaleArg::Auto)]
    pub scale: ScaleArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScaleArg {
    Auto,
    Fixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Png,
    Npy,
    Json,
    /// Vector picture: the PNG's text, shapes and colours; cells as rects with tooltips up to 128 tokens.
    Svg,
    /// A one-head interactive page (hover, zoom, scales), self-contained.
    Html,
    /// The map in the terminal: Unicode half blocks (the default for '-o -' on a terminal).
    Term,
}

/// Which picture of attention to draw (see `attnmap show --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    /// The softmax weights (what transformers' output_attentions returns).
    Weights,
    /// Weight x norm of what each key's value sends through the head (Kobayashi et al. 2020).
    Norm,
    /// Head-averaged weights plus the residual, multiplied through layers 0..L (Abnar & Zuidema 2020).
    Rollout,
    /// Max-flow through the same head-averaged layers (Abnar & Zuidema 2020); short inputs only.
    Flow,
}

const SHOW_EXAMPLES: &str = "\
Examples:
  attnmap show \"The WhirlyGigs arrived broken\" --layer 5 --head 3
  attnmap \"The WhirlyGigs arrived broken\" -l 5 -H 3 -o map.png --scale fixed --colormap magma
  attnmap show --file review.txt --pair \"Was it broken?\" -l 0 -H 7 -o head7.png
  echo \"The cat sat\" | attnmap show - -l 2 -H 1 -o - --format npy > map.npy
  attnmap \"The WhirlyGigs arrived broken\" --layer 5 --head 3 --view norm
  attnmap \"The WhirlyGigs arrived broken\" --layer 5 --view rollout --words
  attnmap \"The WhirlyGigs arrived broken\" --layer 5 --view flow -o flow.npy

Views: weights (default) is where one head's weight goes; norm scales it by the size of what each
key's value carries (it is not a probability: its colour bar is in its own units); rollout and
flow (no --head: they average every head of layers 0..L, with the residual) estimate how much
output position i after layer L draws on input token j. --words merges tokens into words: rows are
the mean over a word's tokens, columns the sum.

`show` is the default: `attnmap TEXT ...` means `attnmap show TEXT ...`.";

#[derive(Debug, Args)]
#[command(after_help = SHOW_EXAMPLES)]
pub struct ShowArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Layer to draw, from 0 (`attnmap info` lists the range).
    #[arg(short, long, allow_negative_numbers = true, value_parser = parse_index)]
    pub layer: Option<usize>,

    /// Head to draw, from 0.
    #[arg(short = 'H', long, allow_negative_numbers = true, value_parser = parse_index)]
    pub head: Option<usize>,

    /// Output file; the format follows the extension (.png, .svg, .html, .npy, .json). '-' writes
    /// to stdout (a terminal gets the map as text, a pipe gets PNG). Default:
    /// MODEL_L{layer}_H{head}.png in the current folder.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Output format, overriding the extension (needed for '-o -' when not PNG); `term` prints
    /// the map in the terminal (COLUMNS/LINES or the terminal's size; COLORTERM for 24-bit colour).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub style: StyleArgs,

    /// What to draw: weights, norm (per head), rollout or flow (per layer, no --head).
    #[arg(long, value_enum, default_value_t = ViewArg::Weights)]
    pub view: ViewArg,

    /// Draw words instead of tokens: rows are the mean over a word's tokens, columns the sum.
    #[arg(long)]
    pub words: bool,
}

/// A layer or head index: counted from 0; Python's negative indices are named as such.
fn parse_index(value: &str) -> Result<usize, String> {
    if value.starts_with('-') && value[1..].parse::<u64>().is_ok() {
        return Err(format!("{value} is negative: layers and heads count from 0 and negative indices are not supported (`attnmap info` lists the range)"));
    }
    value.parse().map_err(|_| format!("{value:?} is not a number; layers and heads count from 0 (`attnmap info` lists the range)"))
}

const DUMP_EXAMPLES: &str = "\
Examples:
  attnmap dump \"The WhirlyGigs arrived broken\" --out maps/
  attnmap dump --file review.txt --out maps/ --force --colormap magma
  attnmap dump \"The year 2019 ended\" --model SmolLM2-135M-Instruct.Q4_1.gguf --out maps/
  python3 -c 'import numpy; print(numpy.load(\"maps/attention.npy\").shape)'
  attnmap dump \"The WhirlyGigs arrived broken\" --views norm,rollout --words --out maps/

maps/attention.npy is float32 [layers, heads, query, key]; maps/manifest.json names the tokens.
--views adds norm.npy [layers, heads, query, key], rollout.npy and flow.npy [layers, query, key]
with their pictures; --words adds the same arrays over words under maps/words/.

Big models: a dump holds one layer of maps at a time, so its limit is the disk (checked before
any work); --no-pictures skips the per-head PNGs, most of the time of a many-head dump:
  attnmap dump --file long.txt --model big-model/ --out maps/ --no-pictures

Many texts (a corpus, resumable, shardable across machines):
  attnmap dump --texts probes.txt --out corpus/                 (corpus/00001/, ..., index.jsonl)
  attnmap dump --texts probes.txt --out corpus/ --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT";

#[derive(Debug, Args)]
#[command(after_help = DUMP_EXAMPLES)]
#[command(mut_arg("text", |a| a.required_unless_present_any(["file", "texts"])))]
pub struct DumpArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Folder to create. It is built beside itself and renamed into place when complete.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Replace DIR if it exists and is not empty (its old content is removed only once the new dump is complete).
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub style: StyleArgs,

    /// Views to write besides the weights, comma-separated, or `all`: norm.npy and norm/,
    /// rollout.npy and rollout/, flow.npy and flow/ (flow on short inputs only).
    #[arg(long, value_name = "LIST|all", value_delimiter = ',', default_value = "weights",
          value_parser = PossibleValuesParser::new(["weights", "norm", "rollout", "flow", "all"]))]
    pub views: Vec<String>,

    /// Also write word-level arrays (words/*.npy) and the words in the manifest.
    #[arg(long)]
    pub words: bool,

    /// Also write SVG pictures: heads/L{ll}_H{hh}.svg and grid.svg (vector text, for papers).
    #[arg(long)]
    pub svg: bool,

    /// Write no picture per map (heads/*.png and the views' pictures): the arrays, grid.png,
    /// view.html and the manifest only. Drawing and PNG-encoding every head is most of a big
    /// model's dump time (9,216 heads of a 96 x 96 model); draw the few you need with `show`.
    #[arg(long, conflicts_with = "svg")]
    pub no_pictures: bool,

    /// A corpus: one dump per text of FILE (lines, or JSON lines {"text": ..., "pair": ...}) in
    /// DIR/00001/, DIR/00002/, ... plus DIR/index.jsonl. A rerun resumes: complete dumps are kept.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["text", "file"])]
    pub texts: Option<PathBuf>,

    /// With --texts: only every N-th text starting at K (K in 0..N-1), for job arrays; shards
    /// written into one DIR (or merged by copying folders) equal one unsharded run byte for byte.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
}

const VIEW_EXAMPLES: &str = "\
Examples:
  attnmap dump \"The WhirlyGigs arrived broken\" --out maps/     (writes maps/view.html too)
  attnmap view maps/                                           (rewrites maps/view.html)
  attnmap view maps/ -o layers0-3.html --layers 0-3 --heads 0,2,5

The page loads nothing from the network. Click a thumbnail or use the arrow keys
(left/right: head, up/down: layer); hover a cell for its weight and rank; click a
token to colour the strip by its row; wheel or +/- to zoom, drag to pan.";

#[derive(Debug, Args)]
#[command(after_help = VIEW_EXAMPLES)]
pub struct ViewArgs {
    /// A folder written by `attnmap dump`.
    #[arg(value_name = "DUMP_DIR")]
    pub dump: PathBuf,

    /// Where to write the page. Default: DUMP_DIR/view.html.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Only these layers, e.g. 0-3,7 (big dumps: the page holds one byte per weight).
    #[arg(long, value_name = "LIST")]
    pub layers: Option<String>,

    /// Only these heads, e.g. 0,2,5.
    #[arg(long, value_name = "LIST")]
    pub heads: Option<String>,

    /// Colormap, and the page's starting scale (switchable on the page).
    #[command(flatten)]
    pub style: StyleArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    /// Mean |old - new| over every cell of a head's map.
    #[value(name = "mean_abs")]
    MeanAbs,
    /// Largest |old - new| in a head's map.
    #[value(name = "max_abs")]
    MaxAbs,
    /// Jensen-Shannon divergence (natural log, 0..ln 2) between matching rows, averaged over rows.
    Jsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AggregateArg {
    /// Judge each head by the text it changed most on (a gate: one bad text fails).
    Worst,
    /// Judge each head by its mean over the texts.
    Mean,
}

const DIFF_EXAMPLES: &str = "\
Examples:
  attnmap diff old-dump/ new-dump/ --fail-above 0.01
  attnmap diff --model sentence-transformers/all-MiniLM-L6-v2 --against ./finetuned \"The WhirlyGigs arrived broken\"
  attnmap diff --model ./v1 --against ./v2 --texts probes.txt --markdown --out report/ --fail-above 0.02
  attnmap diff --model ./v1 --against ./v2 --texts probes.txt --fail-above 0.02 --aggregate mean
  attnmap diff v1-corpus/ v2-corpus/ --fail-above 0.02   # two corpora of dump --texts, same texts

By default a head fails when its metric on any one text is above --fail-above;
--aggregate mean judges its mean over the texts instead.

Exit status, like diff(1): 0 when no head exceeds the threshold, 1 when one does, 2 on error.";

#[derive(Debug, Args)]
#[command(after_help = DIFF_EXAMPLES)]
pub struct DiffArgs {
    /// OLD_DUMP NEW_DUMP: two folders written by `attnmap dump` (two dumps, or two corpora of
    /// `dump --texts` over the same texts). With --against: at most one TEXT ('-' for stdin).
    #[arg(value_name = "OLD_DUMP NEW_DUMP | TEXT", num_args = 0..=2)]
    pub inputs: Vec<String>,

    /// The old model (hub id or folder), run on the texts; used with --against.
    #[arg(short, long, value_name = "ID|PATH", requires = "against")]
    pub model: Option<String>,

    /// Revision of --model.
    #[arg(long, default_value = "main")]
    pub revision: String,

    /// The new model to compare with --model (hub id or folder).
    #[arg(long, value_name = "ID|PATH")]
    pub against: Option<String>,

    /// Revision of --against.
    #[arg(long, default_value = "main")]
    pub against_revision: String,

    /// A probe set: one text per line, or JSON lines {"text": ..., "pair": ...}.
    #[arg(long, value_name = "FILE", requires = "against")]
    pub texts: Option<PathBuf>,

    /// A second sentence for TEXT (pairs in a probe set go in its JSON lines).
    #[arg(long, value_name = "TEXT", requires = "against")]
    pub pair: Option<String>,

    /// What --fail-above is compared with, per head.
    #[arg(long, value_enum, default_value_t = MetricArg::Jsd)]
    pub metric: MetricArg,

    /// Fail (exit 1) when any head's metric on any one text is above this (see --aggregate).
    /// The default 0 fails on any change, like diff(1).
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    pub fail_above: f64,

    /// How a head's metric over the probe texts meets --fail-above: `worst` (any one text
    /// past it fails the run) or `mean` (its average over the texts must be past it).
    #[arg(long, value_enum, default_value_t = AggregateArg::Worst, value_name = "HOW")]
    pub aggregate: AggregateArg,

    /// How many of the most-changed heads to list (and draw with --out).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Print the whole report as JSON (every head) instead of a table.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,

    /// Print the report as Markdown, fit for a CI job summary.
    #[arg(long)]
    pub markdown: bool,

    /// Also write pictures: old | new | difference for the top heads, and a layers x heads grid of the metric.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Replace --out DIR if it exists and is not empty.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub style: StyleArgs,

    /// Which view of two dumps to compare (the dumps must hold it: dump --views).
    #[arg(long, value_enum, default_value_t = ViewArg::Weights)]
    pub view: ViewArg,
}

const INFO_EXAMPLES: &str = "\
Examples:
  attnmap info
  attnmap info --model ./my-bert-folder
  attnmap info --model SmolLM2-135M-Instruct.Q4_1.gguf
  HF_HUB_OFFLINE=1 attnmap info --model sentence-transformers/all-MiniLM-L6-v2 --revision main

It prints the valid --layer and --head ranges.";

#[derive(Debug, Args)]
#[command(after_help = INFO_EXAMPLES)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Texts for `heads` and `find`: one TEXT, or a probe set.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// A probe set: one text per line, or JSON lines {"text": ..., "pair": ...}.
    #[arg(long, value_name = "FILE")]
    pub texts: Option<PathBuf>,

    /// A second sentence, encoded as a pair (for TEXT, and for plain lines of --texts).
    #[arg(long, value_name = "TEXT")]
    pub pair: Option<String>,

    /// Word-level statistics: a word's pieces merged (rows: mean over its tokens, columns: sum).
    #[arg(long)]
    pub words: bool,

    /// Run on the maps of a corpus written by `attnmap dump --texts FILE --out DIR` (or of one
    /// dump folder) instead of a model: the forward passes are done once, sharded if need be.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["text", "texts", "pair", "model", "revision", "quantized"])]
    pub corpus: Option<PathBuf>,
}

const HEADS_EXAMPLES: &str = "\
Examples:
  attnmap heads \"The WhirlyGigs arrived broken\"
  attnmap heads --texts probes.txt --sort prev --top 10
  attnmap heads --texts probes.txt --words --json > heads.json
  attnmap heads --texts probes.txt --out heads/      # one layers x heads picture per column

From a corpus dumped once (sharded across machines if need be), same results, no model:
  attnmap dump --texts probes.txt --out corpus/ --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
  attnmap heads --corpus corpus/ --sort prev --top 10

Columns (a mean over query rows i, then over texts, each text weighted equally; K_i = the keys
row i may attend: all for encoders, j <= i for decoders):
  entropy       -sum_j a_ij ln a_ij, nats          entropy_norm  entropy / ln |K_i| (1 = uniform)
  first         weight on the first token           special       on the tokenizer's special tokens
  punct         on punctuation tokens               self          on itself
  prev          on the token before (i >= 1)        next          on the token after (encoders only)
  distance      sum_j a_ij |i - j|                  max           the largest weight in the row
  pattern       first-token, special, previous-token, next-token, self, punctuation (that column
                >= 0.5, first rule that holds), broad (entropy_norm >= 0.8), else mixed";

#[derive(Debug, Args)]
#[command(after_help = HEADS_EXAMPLES)]
pub struct HeadsArgs {
    /// The text to run ('-' reads stdin); or give --texts FILE.
    #[arg(value_name = "TEXT", conflicts_with = "texts")]
    pub text: Option<String>,

    #[command(flatten)]
    pub probe: ProbeArgs,

    /// Sort the table by this column, largest first (default: layer, head).
    #[arg(long, value_name = "COLUMN", value_parser = PossibleValuesParser::new(["layer", "entropy", "entropy_norm", "first", "special", "punct", "self", "prev", "next", "distance", "max", "pattern"]))]
    pub sort: Option<String>,

    /// List only the first N heads of the table (after sorting).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    /// Print every head as JSON instead of a table.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,

    /// Print every head as CSV instead of a table.
    #[arg(long)]
    pub csv: bool,

    /// Also write one layers x heads picture per column, heads.json and heads.csv.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Replace --out DIR if it exists and is not empty.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub style: StyleArgs,
}

const FIND_EXAMPLES: &str = "\
Examples:
  attnmap find previous-token --texts probes.txt
  attnmap find induction --repeat-random 20 --seed 1
  attnmap find --pairs coref.jsonl --threshold 0.3 --out found/
  attnmap find duplicate-token \"the cat saw the dog and the cat ran\" --json
  attnmap find previous-token --corpus corpus/        # the maps of attnmap dump --texts FILE --out corpus/
  attnmap find --pairs coref.jsonl --corpus coref/    # coref/ from attnmap dump --texts coref.jsonl

Patterns: previous-token, next-token, self, first, special, punct, duplicate-token (weight on
earlier copies of the same token), induction (on the token after each earlier copy).
--pairs FILE holds JSON lines such as
  {\"text\": \"The trophy did not fit in the case because it was too big.\",
   \"pairs\": [{\"from\": \"it\", \"to\": \"trophy\"}, {\"from\": [43, 45], \"to\": \"case#1\"}]}
a word by its text (\"word#2\": its second occurrence; words of the pair count too) or a
[start, end) character span of the text (Unicode characters, as Python indexes a str).

A head's score is its mean weight from -> to. The keys null redraws every target among the
keys the query could have been paired with (--trials times, same draws for every head), so
p = (1 + #{trials >= score}) / (trials + 1); q is Benjamini-Hochberg over all heads, and a
head passes when q <= --alpha. A head that looks convincing in one map but does not pass
scores no better than random keys would.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NullArg {
    /// Redraw each query's targets among the keys it could attend (no forward pass per trial).
    Keys,
    /// Shuffle each text's non-special tokens (a forward pass per shuffle); the pairs follow their tokens.
    Shuffle,
}

#[derive(Debug, Args)]
#[command(after_help = FIND_EXAMPLES)]
pub struct FindArgs {
    /// A built-in relation: previous-token, next-token, self, first, special, punct, duplicate-token, induction.
    #[arg(value_name = "PATTERN", required_unless_present_any = ["pairs"])]
    pub pattern: Option<String>,

    /// The text to run ('-' reads stdin); or give --texts FILE.
    #[arg(value_name = "TEXT", conflicts_with = "texts")]
    pub text: Option<String>,

    #[command(flatten)]
    pub probe: ProbeArgs,

    /// Your own relation: JSON lines {"text", "pair"?, "pairs": [{"from", "to"}, ...]}.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["texts", "repeat_random"])]
    pub pairs: Option<PathBuf>,

    /// Texts of N random vocabulary tokens repeated twice (the classic induction test), 20 of them.
    #[arg(long, value_name = "N", conflicts_with_all = ["texts", "corpus"])]
    pub repeat_random: Option<usize>,

    /// Seed of the null's draws (and of --repeat-random), so output is reproducible.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// What chance means: random keys for the same queries, or shuffled texts.
    #[arg(long, value_enum, default_value_t = NullArg::Keys)]
    pub null: NullArg,

    /// Trials of the keys null.
    #[arg(long, value_name = "K", default_value_t = 1000)]
    pub trials: usize,

    /// Shuffles of the shuffle null (each a forward pass per text).
    #[arg(long, value_name = "K", default_value_t = 20)]
    pub shuffles: usize,

    /// False discovery rate: a head passes when its Benjamini-Hochberg q-value is at most this.
    #[arg(long, value_name = "A", default_value_t = 0.05)]
    pub alpha: f64,

    /// Also count the heads scoring >= T, and how many do by chance (mean and 95% range over trials).
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,

    /// How many heads to list, by q then score (all with --json).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Print everything as JSON.
    #[arg(long)]
    pub json: bool,

    /// Also write a layers x heads picture of scores with passing heads outlined, and find.json.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Replace --out DIR if it exists and is not empty.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub style: StyleArgs,
}

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  attnmap completions bash > ~/.local/share/bash-completion/completions/attnmap
  attnmap completions zsh > ~/.zfunc/_attnmap    # with fpath+=(~/.zfunc) before compinit
  attnmap completions fish > ~/.config/fish/completions/attnmap.fish
  source <(attnmap completions bash)              # this shell only
  attnmap completions powershell >> $PROFILE";

#[derive(Debug, Args)]
#[command(after_help = COMPLETIONS_EXAMPLES)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

const MAN_EXAMPLES: &str = "\
Examples:
  attnmap man | man -l -
  attnmap man > ~/.local/share/man/man1/attnmap.1
  sudo sh -c 'attnmap man > /usr/local/share/man/man1/attnmap.1'";

#[derive(Debug, Args)]
#[command(after_help = MAN_EXAMPLES)]
pub struct ManArgs {}

/// Parse the command line as the binary does: `show` by default, and clap's own help and
/// errors coloured only as `--color`, NO_COLOR and CI allow (clap alone would colour in CI).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Cli {
    try_parse(args).unwrap_or_else(|e| e.exit())
}

/// As [`parse`], returning clap's error (help and --version included) for the caller to print.
pub fn try_parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    let args = with_default_subcommand(args.into_iter().collect());
    let mut command = Cli::command().color(color_flag(&args).unwrap_or_default().for_clap());
    let matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// Every name a subcommand answers to (aliases and clap's `help` included), read from the
/// clap Command itself, so a subcommand added later is never taken for TEXT.
pub fn subcommand_names() -> Vec<String> {
    let mut command = Cli::command();
    command.build();
    command.get_subcommands().flat_map(|sub| std::iter::once(sub.get_name()).chain(sub.get_all_aliases())).map(str::to_string).collect()
}

/// Flags only `show` has: a first word equal to another subcommand's name followed by
/// one of these is the TEXT (`attnmap info --layer 0 --head 1` draws the text "info").
const SHOW_ONLY_FLAGS: &[&str] = &["-l", "--layer", "-H", "--head", "-o", "--output", "--format"];

fn show_flags_follow<'a>(mut rest: impl Iterator<Item = &'a str>) -> bool {
    rest.any(|a| SHOW_ONLY_FLAGS.iter().any(|flag| a == *flag || (a.starts_with(flag) && a[flag.len()..].starts_with(|c: char| c == '=' || (flag.len() == 2 && !c.is_alphabetic())))))
}

/// Insert `show` when the first argument is not a subcommand or a top-level flag, or when
/// it names a subcommand but show's own flags follow (then it is the text). Global
/// flags (`-q`, `--color WHEN`) may come first and are stepped over with their values.
pub fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let mut command = Cli::command();
    command.build();
    let names = |arg: &clap::Arg| {
        let short = arg.get_short().map(|c| format!("-{c}"));
        let long = arg.get_long().map(|l| format!("--{l}"));
        short.into_iter().chain(long).collect::<Vec<_>>()
    };
    let mut first_word = None;
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    while let Some(word) = words.next() {
        let global = word.and_then(|w| command.get_arguments().find(|a| a.is_global_set() && names(a).iter().any(|n| n == w || w.starts_with(&format!("{n}=")))));
        match global {
            Some(arg) if arg.get_action().takes_values() && !word.unwrap_or_default().contains('=') => {
                words.next();
            }
            Some(_) => {}
            None => {
                first_word = Some(word);
                break;
            }
        }
    }
    let needs_show = match first_word {
        None => false,
        Some(None) => true,
        Some(Some(word)) => {
            let top_level_flag = command.get_arguments().any(|a| names(a).iter().any(|n| n == word));
            (!subcommand_names().iter().any(|name| name == word) && !top_level_flag)
                || (matches!(word, "dump" | "diff" | "info") && show_flags_follow(words.flatten()))
        }
    };
    if needs_show {
        args.insert(1, "show".into());
    }
    args
}

/// The value of `--color` on the command line, read before clap parses it, so clap's own
/// help and errors follow it too.
pub fn color_flag(args: &[OsString]) -> Option<ColorChoice> {
    let mut choice = None;
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        let value = match word.as_ref() {
            "--" => break,
            "--color" => words.next().map(|v| v.into_owned()),
            other => other.strip_prefix("--color=").map(str::to_string),
        };
        if let Some(parsed) = value.and_then(|v| ColorChoice::from_str(&v, true).ok()) {
            choice = Some(parsed);
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(|a| a.into()).collect()
    }

    #[test]
    fn show_is_the_default_subcommand() {
        assert_eq!(with_default_subcommand(words(&["attnmap", "hi", "--layer", "1"]))[1], "show");
        assert_eq!(with_default_subcommand(words(&["attnmap", "--layer", "1", "hi"]))[1], "show");
        assert_eq!(with_default_subcommand(words(&["attnmap", "dump", "hi"]))[1], "dump");
        assert_eq!(with_default_subcommand(words(&["attnmap", "--help"]))[1], "--help");
        assert_eq!(with_default_subcommand(words(&["attnmap", "-q", "dump"]))[2], "dump");
        // A text equal to a subcommand name, followed by show's own flags, is the text.
        assert_eq!(with_default_subcommand(words(&["attnmap", "info", "--layer", "1", "--head", "0"]))[1], "show");
        assert_eq!(with_default_subcommand(words(&["attnmap", "info", "-l1", "-H0"]))[1], "show");
        assert_eq!(with_default_subcommand(words(&["attnmap", "info", "--model", "x"]))[1], "info");
        assert_eq!(with_default_subcommand(words(&["attnmap", "dump", "hi", "--out", "d"]))[1], "dump");
        let cli = Cli::try_parse_from(with_default_subcommand(words(&["attnmap", "hi", "--layer", "5", "--head", "3"]))).unwrap();
        match cli.command {
            Command::Show(args) => assert_eq!((args.layer, args.head, args.input.text.as_deref()), (Some(5), Some(3), Some("hi"))),
            other => panic!("{other:?}"),
        }
    }

    /// The names come from the clap Command: a subcommand added later (and clap's `help`)
    /// is never mistaken for TEXT, even behind the global flags.
    #[test]
    fn no_subcommand_is_taken_for_text() {
        let names = subcommand_names();
        for expected in ["show", "dump", "diff", "info", "completions", "man", "help"] {
            assert!(names.iter().any(|name| name == expected), "{expected} missing from {names:?}");
        }
        let mut command = Cli::command();
        command.build();
        for sub in command.get_subcommands() {
            let name = sub.get_name();
            assert_eq!(with_default_subcommand(words(&["attnmap", name]))[1], name);
            assert_eq!(with_default_subcommand(words(&["attnmap", "-q", "--color", "never", name]))[4], name);
            assert_eq!(with_default_subcommand(words(&["attnmap", "--color=always", "--quiet", name]))[3], name);
        }
    }

    #[test]
    fn global_flags_may_come_before_the_default_subcommand() {
        let parse = |args: &[&str]| Cli::try_parse_from(with_default_subcommand(words(args))).unwrap();
        match parse(&["attnmap", "--color", "never", "hi", "-l", "1", "-H", "0"]).command {
            Command::Show(args) => assert_eq!(args.input.text.as_deref(), Some("hi")),
            other => panic!("{other:?}"),
        }
        let cli = parse(&["attnmap", "--color", "never", "dump", "hi", "--out", "maps"]);
        assert!(matches!(cli.command, Command::Dump(_)) && cli.color == ColorChoice::Never);
        let cli = parse(&["attnmap", "-q", "--color=always", "info"]);
        assert!(matches!(cli.command, Command::Info(_)) && cli.color == ColorChoice::Always && cli.quiet);
        assert_eq!(with_default_subcommand(words(&["attnmap", "--version"]))[1], "--version");
        assert_eq!(with_default_subcommand(words(&["attnmap", "-h"]))[1], "-h");
    }

    #[test]
    fn color_flag_is_read_before_parsing() {
        let flag = |args: &[&str]| color_flag(&words(args));
        assert_eq!(flag(&["attnmap", "hi"]), None);
        assert_eq!(flag(&["attnmap", "--color", "never", "hi"]), Some(ColorChoice::Never));
        assert_eq!(flag(&["attnmap", "dump", "hi", "--color=always"]), Some(ColorChoice::Always));
        assert_eq!(flag(&["attnmap", "--color", "bogus"]), None, "clap reports the bad value");
        assert_eq!(flag(&["attnmap", "--", "--color=always"]), None, "after -- it is text");
    }

    /// Every subcommand, including any added later, teaches by example in its `--help`.
    #[test]
    fn every_subcommand_help_has_examples() {
        let mut command = Cli::command();
        command.build();
        let mut checked = 0;
        for sub in command.get_subcommands_mut().filter(|sub| sub.get_name() != "help") {
            let name = sub.get_name().to_string();
            let help = sub.render_long_help().to_string();
            let examples = help.split_once("Examples:\n").map(|(_, examples)| examples).unwrap_or_else(|| panic!("`attnmap {name} --help` has no Examples section:\n{help}"));
            let example_lines: Vec<&str> = examples.lines().take_while(|line| line.starts_with("  ")).collect();
            assert!(example_lines.len() >= 2, "`attnmap {name} --help`: at least two examples, indented by two spaces:\n{examples}");
            assert!(example_lines.iter().any(|line| line.contains(&format!("attnmap {name}"))), "`attnmap {name} --help`: an example should run `attnmap {name}`:\n{examples}");
            checked += 1;
        }
        assert!(checked >= 6);
    }
}
