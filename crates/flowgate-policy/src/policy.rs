//! Compilation of a tenant's rules (plus its preset) into one [`Policy`] program, and its
//! evaluation over a text.
//!
//! Owns: rule validation beyond serde, the single Aho-Corasick automaton over every literal
//! anchor (secret prefixes and keywords, injection phrases, tenant keywords), the `RegexSet`
//! over tenant regexes, the per-phase scan plans, the mapping of detector hits to rule
//! findings in original byte offsets, conflict resolution (priority, then severity; `allow`
//! exceptions) and the stream holdback bound. Leaves out: detector internals
//! (`crate::detectors`), stream bookkeeping (`crate::stream`), IO of any kind.

use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::detector::{Confidence, DetectorId, DetectorSelector, SecretKind};
use crate::detectors::secret::{self, SecretAnchor};
use crate::detectors::structural::{self, StructuralSet};
use crate::detectors::{Hit, injection};
use crate::error::PolicyError;
use crate::finding::{Decision, Evaluation, Finding};
use crate::normalize::Normalized;
use crate::rule::{Action, Phase, Preset, Rule, RulePhase, downgrade};

/// Bytes a stream screener always holds back: covers every built-in detector whose matches
/// are bounded (the longest being an e-mail address, 255 bytes, and a keyword-anchored
/// assignment, 250 bytes).
pub const BASE_STREAM_HOLDBACK: usize = 256;

/// The largest holdback a tenant's keywords or bounded regexes can ask for.
pub const MAX_STREAM_HOLDBACK: usize = 1024;

/// The longest span a single finding can have while still open at the end of a stream buffer
/// (PEM private keys and JWTs; longer ones are redacted up to this cap).
pub const MAX_OPEN_MATCH: usize = secret::LONG_SECRET_CAP;

/// Limits applied when compiling rules. Defaults suit per-tenant rules from the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// Regions (ISO 3166 alpha-2) whose national phone formats are recognised; numbers with a
    /// leading `+` are recognised for every region.
    pub phone_regions: Vec<String>,
    /// Most rules per policy, preset included.
    pub max_rules: usize,
    /// Longest keyword (bytes).
    pub max_keyword_bytes: usize,
    /// Most keywords in one rule.
    pub max_keywords_per_rule: usize,
    /// Longest regex pattern (bytes of source).
    pub max_regex_pattern_bytes: usize,
    /// `regex` compiled-program size limit (bytes) per pattern and for the set.
    pub regex_size_limit: usize,
    /// `regex` lazy-DFA cache limit (bytes) per pattern.
    pub regex_dfa_size_limit: usize,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            phone_regions: vec!["US".to_owned(), "GB".to_owned()],
            max_rules: 2_000,
            max_keyword_bytes: 256,
            max_keywords_per_rule: 10_000,
            max_regex_pattern_bytes: 2_048,
            regex_size_limit: 1 << 20,
            regex_dfa_size_limit: 2 << 20,
        }
    }
}

/// Where and how a text is screened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalContext<'a> {
    /// Request (prompt) or response (completion).
    pub phase: Phase,
    /// The model requested: model allow/deny rules run only when this is set.
    pub model: Option<&'a str>,
    /// The size of the whole prompt: `max_prompt_bytes` rules run only when this is set (the
    /// gateway screens messages one by one but limits the prompt as a whole).
    pub prompt_bytes: Option<usize>,
}

impl EvalContext<'_> {
    /// Screening a prompt, without model or size rules.
    #[must_use]
    pub fn request() -> Self {
        EvalContext {
            phase: Phase::Request,
            model: None,
            prompt_bytes: None,
        }
    }

    /// Screening a completion.
    #[must_use]
    pub fn response() -> Self {
        EvalContext {
            phase: Phase::Response,
            model: None,
            prompt_bytes: None,
        }
    }
}

impl<'a> EvalContext<'a> {
    /// Also runs model rules for `model`.
    #[must_use]
    pub fn with_model(mut self, model: &'a str) -> Self {
        self.model = Some(model);
        self
    }

    /// Also runs size rules for a prompt of `bytes` bytes.
    #[must_use]
    pub fn with_prompt_bytes(mut self, bytes: usize) -> Self {
        self.prompt_bytes = Some(bytes);
        self
    }
}

/// A compiled policy: cheap to clone (one `Arc`), `Send + Sync`, immutable. The gateway keeps
/// one per tenant behind an atomic swap and replaces it when rules change.
#[derive(Clone)]
pub struct Policy {
    program: Arc<Program>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.program.rules.len())
            .field("secret_anchors", &self.program.secret_meta.len())
            .field("keywords", &self.program.keyword_meta.len())
            .field("regexes", &self.program.regexes.len())
            .field("stream_holdback", &self.program.holdback)
            .finish()
    }
}

#[derive(Debug)]
enum CompiledMatch {
    Detector {
        selector: DetectorSelector,
        min_confidence: Confidence,
    },
    Keywords,
    Regex,
    ModelAllow(Vec<ModelPattern>),
    ModelDeny(Vec<ModelPattern>),
    MaxPromptBytes(usize),
}

#[derive(Debug)]
struct ModelPattern {
    name: String,
    prefix: bool,
}

impl ModelPattern {
    fn parse(raw: &str) -> Self {
        match raw.strip_suffix('*') {
            Some(prefix) => ModelPattern {
                name: prefix.to_ascii_lowercase(),
                prefix: true,
            },
            None => ModelPattern {
                name: raw.to_ascii_lowercase(),
                prefix: false,
            },
        }
    }

    fn matches(&self, model: &str) -> bool {
        let model = model.as_bytes();
        let name = self.name.as_bytes();
        if self.prefix {
            model.len() >= name.len() && model[..name.len()].eq_ignore_ascii_case(name)
        } else {
            model.eq_ignore_ascii_case(name)
        }
    }
}

#[derive(Debug)]
struct CompiledRule {
    id: Arc<str>,
    priority: i32,
    phase: RulePhase,
    action: Action,
    matcher: CompiledMatch,
}

/// What a tenant keyword pattern in the keyword automaton belongs to.
#[derive(Debug)]
struct KeywordMeta {
    rule: usize,
    /// The normalised keyword in its original case (checked when `case_sensitive`).
    literal: Box<str>,
    case_sensitive: bool,
    whole_word: bool,
}

/// What to run for one phase.
#[derive(Debug, Default, Clone, Copy)]
struct ScanPlan {
    structural: StructuralSet,
    injection: bool,
    invisible: bool,
    /// Bit per `SecretKind::ALL` index.
    secrets: u16,
    keywords: bool,
    regexes: bool,
}

impl ScanPlan {
    fn wants_secret(&self, anchor: SecretAnchor) -> bool {
        anchor
            .kinds()
            .iter()
            .any(|kind| self.secrets & secret_bit(*kind) != 0)
    }
}

fn secret_bit(kind: SecretKind) -> u16 {
    let index = SecretKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    1 << index
}

struct Program {
    /// Per phase (as `plans`): whether any rule covers it, decided at compile time.
    screens: [bool; 2],
    rules: Vec<CompiledRule>,
    /// Indices of detector rules (checked for every detector hit).
    detector_rules: Vec<usize>,
    /// Indices of model and size rules.
    meta_rules: Vec<usize>,
    plans: [ScanPlan; 2],
    /// Case-sensitive secret prefixes (searched in the normalised text).
    secret_anchors: Option<AhoCorasick>,
    secret_meta: Vec<(SecretAnchor, &'static str)>,
    /// Injection phrases, lower case (searched in the lower-cased text).
    phrases: Option<AhoCorasick>,
    /// Tenant keywords, lower case (searched in the lower-cased text).
    keywords: Option<AhoCorasick>,
    keyword_meta: Vec<KeywordMeta>,
    regex_set: Option<RegexSet>,
    /// (rule index, regex), in `regex_set` order.
    regexes: Vec<(usize, Regex)>,
    phone_regions: Vec<phonenumber::country::Id>,
    holdback: usize,
}

/// A finding before conflict resolution (keeps the rule priority).
#[derive(Debug, Clone)]
pub(crate) struct RawFinding {
    pub(crate) finding: Finding,
    pub(crate) priority: i32,
}

fn plan_index(phase: Phase) -> usize {
    match phase {
        Phase::Request => 0,
        Phase::Response => 1,
    }
}

fn valid_rule_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn match_kind_name(matcher: &CompiledMatch) -> &'static str {
    match matcher {
        CompiledMatch::Detector { .. } => "detector",
        CompiledMatch::Keywords => "keyword",
        CompiledMatch::Regex => "regex",
        CompiledMatch::ModelAllow(_) => "model_allow",
        CompiledMatch::ModelDeny(_) => "model_deny",
        CompiledMatch::MaxPromptBytes(_) => "max_prompt_bytes",
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn boundary_ok(text: &str, start: usize, end: usize) -> bool {
    let first = text[start..end].chars().next();
    let last = text[start..end].chars().next_back();
    let before_ok = !first.is_some_and(is_word_char)
        || !text[..start].chars().next_back().is_some_and(is_word_char);
    let after_ok =
        !last.is_some_and(is_word_char) || !text[end..].chars().next().is_some_and(is_word_char);
    before_ok && after_ok
}

impl Policy {
    /// Compiles `rules` on top of `preset` with default limits.
    ///
    /// # Errors
    /// See [`PolicyError`]: invalid or duplicate ids, bad match specs, regexes that do not
    /// compile within the limits, unsupported actions.
    pub fn compile(preset: Option<Preset>, rules: &[Rule]) -> Result<Policy, PolicyError> {
        Policy::compile_with(preset, rules, &CompileOptions::default())
    }

    /// Compiles `rules` on top of `preset` with explicit limits.
    ///
    /// # Errors
    /// As [`Policy::compile`], plus [`PolicyError::UnknownPhoneRegion`].
    pub fn compile_with(
        preset: Option<Preset>,
        rules: &[Rule],
        options: &CompileOptions,
    ) -> Result<Policy, PolicyError> {
        let preset_rules = preset.map(Preset::rules).unwrap_or_default();
        let shadow = preset.is_some_and(Preset::downgrades_to_flag);
        let total = preset_rules.len() + rules.len();
        if total > options.max_rules {
            return Err(PolicyError::TooManyRules {
                count: total,
                max: options.max_rules,
            });
        }
        let mut phone_regions = Vec::with_capacity(options.phone_regions.len());
        for region in &options.phone_regions {
            let id = region
                .to_ascii_uppercase()
                .parse::<phonenumber::country::Id>()
                .map_err(|_| PolicyError::UnknownPhoneRegion {
                    region: region.clone(),
                })?;
            phone_regions.push(id);
        }

        let mut builder = Builder::default();
        for rule in preset_rules.iter().chain(rules) {
            builder.add(rule, shadow, options)?;
        }
        builder.finish(options, phone_regions)
    }

    /// Screens `text`. Offsets in the result are bytes of `text`.
    #[must_use]
    pub fn evaluate(&self, text: &str, context: &EvalContext<'_>) -> Evaluation {
        resolve(self.collect(text, context))
    }

    /// Runs only the model and size rules (when the context names a model or a prompt size).
    #[must_use]
    pub fn evaluate_metadata(&self, context: &EvalContext<'_>) -> Evaluation {
        let mut raw = Vec::new();
        self.collect_meta(context, &mut raw);
        resolve(raw)
    }

    /// The bytes a [`crate::StreamScreener`] holds back in the steady state: at least
    /// [`BASE_STREAM_HOLDBACK`], more for long keywords or bounded regexes (at most
    /// [`MAX_STREAM_HOLDBACK`]). While a PEM block or JWT is open at the end of the buffer the
    /// screener holds back from its start, at most [`MAX_OPEN_MATCH`] bytes.
    #[must_use]
    pub fn stream_holdback(&self) -> usize {
        self.program.holdback
    }

    /// Whether any rule screens texts of `phase` (a gateway can skip work for a phase no rule
    /// covers, e.g. re-encoding streams when no rule screens responses).
    #[must_use]
    pub fn screens(&self, phase: Phase) -> bool {
        self.program.screens[plan_index(phase)]
    }

    /// The ids of the compiled rules, in evaluation order (preset first).
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.program.rules.iter().map(|r| &*r.id)
    }

    /// Findings before conflict resolution, sorted by start, in original offsets.
    pub(crate) fn collect(&self, text: &str, context: &EvalContext<'_>) -> Vec<RawFinding> {
        let program = &*self.program;
        let plan = program.plans[plan_index(context.phase)];
        let mut raw: Vec<RawFinding> = Vec::new();
        self.collect_meta(context, &mut raw);

        let normalized = Normalized::new(text);
        let scan_text = normalized.text();
        let mut hits: Vec<Hit> = Vec::new();
        let mut rule_hits: Vec<(usize, usize, usize, DetectorId)> = Vec::new();

        if plan.structural.any() {
            structural::scan(
                scan_text,
                plan.structural,
                &program.phone_regions,
                &mut hits,
            );
        }
        if plan.secrets != 0
            && let Some(automaton) = &program.secret_anchors
        {
            for found in automaton.find_iter(scan_text) {
                let (anchor, literal) = program.secret_meta[found.pattern().as_usize()];
                if plan.wants_secret(anchor)
                    && let Some(hit) = secret::validate(scan_text, anchor, literal, found.start())
                    && plan.secrets & secret_kind_bit(hit.detector) != 0
                {
                    hits.push(hit);
                }
            }
        }
        let phrases = program.phrases.as_ref().filter(|_| plan.injection);
        let keywords = program.keywords.as_ref().filter(|_| plan.keywords);
        if phrases.is_some() || keywords.is_some() {
            // One lower-cased copy (same byte offsets) lets both automata run case-sensitive
            // searches, which use the fast SIMD prefilters.
            let mut lower: Vec<u8> = Vec::with_capacity(scan_text.len());
            lower.extend(scan_text.bytes().map(|b| b.to_ascii_lowercase()));
            if let Some(automaton) = phrases {
                for found in automaton.find_iter(&lower) {
                    let phrase = &injection::PHRASES[found.pattern().as_usize()];
                    if let Some(start) =
                        injection::confirm(&lower, phrase, found.start(), found.end())
                    {
                        hits.push(Hit::new(
                            DetectorId::PromptInjection,
                            Confidence::Pattern,
                            start,
                            found.end(),
                        ));
                    }
                }
            }
            if let Some(automaton) = keywords {
                for found in automaton.find_iter(&lower) {
                    let (start, end) = (found.start(), found.end());
                    let meta = &program.keyword_meta[found.pattern().as_usize()];
                    if !program.rules[meta.rule].phase.covers(context.phase) {
                        continue;
                    }
                    if meta.case_sensitive
                        && scan_text.as_bytes().get(start..end) != Some(meta.literal.as_bytes())
                    {
                        continue;
                    }
                    if meta.whole_word && !boundary_ok(scan_text, start, end) {
                        continue;
                    }
                    rule_hits.push((meta.rule, start, end, DetectorId::Keyword));
                }
            }
        }
        if plan.regexes
            && let Some(set) = &program.regex_set
        {
            for index in set.matches(scan_text).iter() {
                let (rule, regex) = &program.regexes[index];
                if !program.rules[*rule].phase.covers(context.phase) {
                    continue;
                }
                for found in regex.find_iter(scan_text) {
                    if found.end() > found.start() {
                        rule_hits.push((*rule, found.start(), found.end(), DetectorId::Regex));
                    }
                }
            }
        }

        for hit in &hits {
            let (start, end) = normalized.to_original(hit.start, hit.end);
            self.push_detector_findings(
                hit.detector,
                hit.confidence,
                start,
                end,
                context.phase,
                &mut raw,
            );
        }
        if plan.invisible {
            for &(start, end) in normalized.invisible_spans() {
                self.push_detector_findings(
                    DetectorId::InvisibleText,
                    Confidence::Validated,
                    start,
                    end,
                    context.phase,
                    &mut raw,
                );
            }
        }
        for &(rule_index, start, end, detector) in &rule_hits {
            let rule = &program.rules[rule_index];
            let (start, end) = normalized.to_original(start, end);
            raw.push(RawFinding {
                finding: Finding {
                    rule_id: Arc::clone(&rule.id),
                    detector,
                    confidence: Confidence::Pattern,
                    action: rule.action,
                    phase: context.phase,
                    start,
                    end,
                },
                priority: rule.priority,
            });
        }
        merge_duplicates(&mut raw);
        raw
    }

    fn push_detector_findings(
        &self,
        detector: DetectorId,
        confidence: Confidence,
        start: usize,
        end: usize,
        phase: Phase,
        raw: &mut Vec<RawFinding>,
    ) {
        let program = &*self.program;
        for &index in &program.detector_rules {
            let rule = &program.rules[index];
            let CompiledMatch::Detector {
                selector,
                min_confidence,
            } = rule.matcher
            else {
                continue;
            };
            if !rule.phase.covers(phase)
                || !selector.selects(detector)
                || confidence < min_confidence
            {
                continue;
            }
            raw.push(RawFinding {
                finding: Finding {
                    rule_id: Arc::clone(&rule.id),
                    detector,
                    confidence,
                    action: rule.action,
                    phase,
                    start,
                    end,
                },
                priority: rule.priority,
            });
        }
    }

    fn collect_meta(&self, context: &EvalContext<'_>, raw: &mut Vec<RawFinding>) {
        let program = &*self.program;
        for &index in &program.meta_rules {
            let rule = &program.rules[index];
            if !rule.phase.covers(context.phase) {
                continue;
            }
            let (matched, detector) = match &rule.matcher {
                CompiledMatch::ModelAllow(patterns) => (
                    context
                        .model
                        .is_some_and(|m| !patterns.iter().any(|p| p.matches(m))),
                    DetectorId::Model,
                ),
                CompiledMatch::ModelDeny(patterns) => (
                    context
                        .model
                        .is_some_and(|m| patterns.iter().any(|p| p.matches(m))),
                    DetectorId::Model,
                ),
                CompiledMatch::MaxPromptBytes(limit) => (
                    context.prompt_bytes.is_some_and(|bytes| bytes > *limit),
                    DetectorId::MaxPromptBytes,
                ),
                _ => (false, DetectorId::Model),
            };
            if matched {
                raw.push(RawFinding {
                    finding: Finding {
                        rule_id: Arc::clone(&rule.id),
                        detector,
                        confidence: Confidence::Validated,
                        action: rule.action,
                        phase: context.phase,
                        start: 0,
                        end: 0,
                    },
                    priority: rule.priority,
                });
            }
        }
    }
}

fn secret_kind_bit(detector: DetectorId) -> u16 {
    match detector {
        DetectorId::Secret(kind) => secret_bit(kind),
        _ => 0,
    }
}

/// Sorts by span and merges findings of the same rule and detector that overlap (several
/// anchors or phrase variants can report the same span).
fn merge_duplicates(raw: &mut Vec<RawFinding>) {
    if raw.len() < 2 {
        return;
    }
    raw.sort_by(|a, b| {
        (a.finding.start, a.finding.end, &a.finding.rule_id).cmp(&(
            b.finding.start,
            b.finding.end,
            &b.finding.rule_id,
        ))
    });
    let mut merged: Vec<RawFinding> = Vec::with_capacity(raw.len());
    for item in raw.drain(..) {
        let duplicate = merged.iter_mut().rev().take(8).find(|kept| {
            kept.finding.rule_id == item.finding.rule_id
                && kept.finding.detector == item.finding.detector
                && (kept.finding.start == item.finding.start
                    && kept.finding.end == item.finding.end
                    || (item.finding.start < kept.finding.end
                        && kept.finding.start < item.finding.end))
        });
        match duplicate {
            Some(kept) => {
                kept.finding.end = kept.finding.end.max(item.finding.end);
                kept.finding.confidence = kept.finding.confidence.max(item.finding.confidence);
            }
            None => merged.push(item),
        }
    }
    *raw = merged;
}

/// Conflict resolution: a finding is suppressed by an overlapping `allow` finding of strictly
/// higher priority (on equal priority severity decides, and `allow` is the least severe).
/// The decision is the most severe action among the survivors.
pub(crate) fn resolve(raw: Vec<RawFinding>) -> Evaluation {
    let allows: Vec<(usize, usize, i32)> = raw
        .iter()
        .filter(|r| r.finding.action == Action::Allow)
        .map(|r| (r.finding.start, r.finding.end, r.priority))
        .collect();
    let mut evaluation = Evaluation::default();
    for item in raw {
        if item.finding.action != Action::Allow
            && allows.iter().any(|&(start, end, priority)| {
                priority > item.priority && start < item.finding.end && item.finding.start < end
            })
        {
            evaluation.suppressed += 1;
            continue;
        }
        evaluation.decision = evaluation
            .decision
            .max(Decision::from_action(item.finding.action));
        evaluation.findings.push(item.finding);
    }
    evaluation
}

#[derive(Default)]
struct Builder {
    rules: Vec<CompiledRule>,
    ids: std::collections::HashSet<String>,
    detector_rules: Vec<usize>,
    meta_rules: Vec<usize>,
    plans: [ScanPlan; 2],
    /// Tenant keywords: (lower-cased literal, meta).
    keyword_anchors: Vec<(String, KeywordMeta)>,
    regex_sources: Vec<String>,
    regexes: Vec<(usize, Regex)>,
    holdback: usize,
}

impl Builder {
    fn add(
        &mut self,
        rule: &Rule,
        shadow: bool,
        options: &CompileOptions,
    ) -> Result<(), PolicyError> {
        if !valid_rule_id(&rule.id) {
            return Err(PolicyError::InvalidRuleId {
                id: rule.id.clone(),
            });
        }
        if !self.ids.insert(rule.id.clone()) {
            return Err(PolicyError::DuplicateRuleId {
                id: rule.id.clone(),
            });
        }
        let spec = &rule.matcher;
        let kinds = usize::from(spec.detector.is_some())
            + usize::from(spec.keywords.is_some())
            + usize::from(spec.regex.is_some())
            + usize::from(spec.model_allow.is_some())
            + usize::from(spec.model_deny.is_some())
            + usize::from(spec.max_prompt_bytes.is_some());
        if kinds != 1 {
            return Err(PolicyError::MatchKind {
                rule_id: rule.id.clone(),
                found: kinds,
            });
        }
        let rule_index = self.rules.len();
        let misplaced =
            |option: &'static str, match_kind: &'static str| PolicyError::MisplacedOption {
                rule_id: rule.id.clone(),
                option,
                match_kind,
            };
        let matcher = if let Some(selector) = spec.detector {
            if spec.case_sensitive {
                return Err(misplaced("case_sensitive", "detector"));
            }
            CompiledMatch::Detector {
                selector,
                min_confidence: spec.min_confidence.unwrap_or(Confidence::Pattern),
            }
        } else if let Some(words) = &spec.keywords {
            if spec.min_confidence.is_some() {
                return Err(misplaced("min_confidence", "keyword"));
            }
            if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
                return Err(PolicyError::EmptyKeyword {
                    rule_id: rule.id.clone(),
                });
            }
            if words.len() > options.max_keywords_per_rule {
                return Err(PolicyError::TooLarge {
                    rule_id: rule.id.clone(),
                    what: "keyword list",
                    len: words.len(),
                    max: options.max_keywords_per_rule,
                });
            }
            for word in words {
                if word.len() > options.max_keyword_bytes {
                    return Err(PolicyError::TooLarge {
                        rule_id: rule.id.clone(),
                        what: "keyword",
                        len: word.len(),
                        max: options.max_keyword_bytes,
                    });
                }
                let normalized = Normalized::new(word).text().to_owned();
                self.holdback = self.holdback.max(normalized.len() + 1);
                self.keyword_anchors.push((
                    normalized.to_ascii_lowercase(),
                    KeywordMeta {
                        rule: rule_index,
                        literal: normalized.into_boxed_str(),
                        case_sensitive: spec.case_sensitive,
                        whole_word: spec.whole_word,
                    },
                ));
            }
            CompiledMatch::Keywords
        } else if let Some(pattern) = &spec.regex {
            if spec.min_confidence.is_some() {
                return Err(misplaced("min_confidence", "regex"));
            }
            if spec.case_sensitive {
                return Err(misplaced("case_sensitive", "regex"));
            }
            self.add_regex(rule, rule_index, pattern, options)?;
            CompiledMatch::Regex
        } else if let Some(models) = &spec.model_allow {
            CompiledMatch::ModelAllow(models.iter().map(|m| ModelPattern::parse(m)).collect())
        } else if let Some(models) = &spec.model_deny {
            CompiledMatch::ModelDeny(models.iter().map(|m| ModelPattern::parse(m)).collect())
        } else if let Some(limit) = spec.max_prompt_bytes {
            CompiledMatch::MaxPromptBytes(limit)
        } else {
            return Err(PolicyError::MatchKind {
                rule_id: rule.id.clone(),
                found: 0,
            });
        };

        let spanless = matches!(
            matcher,
            CompiledMatch::ModelAllow(_)
                | CompiledMatch::ModelDeny(_)
                | CompiledMatch::MaxPromptBytes(_)
        );
        if spanless && matches!(rule.action, Action::Redact | Action::Allow) {
            return Err(PolicyError::UnsupportedAction {
                rule_id: rule.id.clone(),
                action: rule.action.as_str(),
                match_kind: match_kind_name(&matcher),
            });
        }
        if spanless {
            self.meta_rules.push(rule_index);
        }
        if let CompiledMatch::Detector { selector, .. } = matcher {
            self.detector_rules.push(rule_index);
            for phase in [Phase::Request, Phase::Response] {
                if rule.phase.covers(phase) {
                    enable(&mut self.plans[plan_index(phase)], selector);
                }
            }
        }
        for phase in [Phase::Request, Phase::Response] {
            if rule.phase.covers(phase) {
                let plan = &mut self.plans[plan_index(phase)];
                match matcher {
                    CompiledMatch::Keywords => plan.keywords = true,
                    CompiledMatch::Regex => plan.regexes = true,
                    _ => {}
                }
            }
        }
        self.rules.push(CompiledRule {
            id: Arc::from(rule.id.as_str()),
            priority: rule.priority,
            phase: rule.phase,
            action: if shadow {
                downgrade(rule.action)
            } else {
                rule.action
            },
            matcher,
        });
        Ok(())
    }

    fn add_regex(
        &mut self,
        rule: &Rule,
        rule_index: usize,
        pattern: &str,
        options: &CompileOptions,
    ) -> Result<(), PolicyError> {
        if pattern.len() > options.max_regex_pattern_bytes {
            return Err(PolicyError::TooLarge {
                rule_id: rule.id.clone(),
                what: "regex pattern",
                len: pattern.len(),
                max: options.max_regex_pattern_bytes,
            });
        }
        let regex_error = |message: String| PolicyError::Regex {
            rule_id: rule.id.clone(),
            message,
        };
        let hir =
            regex_automata::util::syntax::parse(pattern).map_err(|e| regex_error(e.to_string()))?;
        let properties = hir.properties();
        if properties.minimum_len() == Some(0) {
            return Err(PolicyError::RegexMatchesEmpty {
                rule_id: rule.id.clone(),
            });
        }
        let bounded = properties.maximum_len().unwrap_or(usize::MAX);
        if bounded <= MAX_STREAM_HOLDBACK {
            self.holdback = self.holdback.max(bounded + 1);
        }
        let regex = RegexBuilder::new(pattern)
            .size_limit(options.regex_size_limit)
            .dfa_size_limit(options.regex_dfa_size_limit)
            .nest_limit(64)
            .build()
            .map_err(|e| regex_error(e.to_string()))?;
        self.regex_sources.push(pattern.to_owned());
        self.regexes.push((rule_index, regex));
        Ok(())
    }

    fn finish(
        mut self,
        options: &CompileOptions,
        phone_regions: Vec<phonenumber::country::Id>,
    ) -> Result<Policy, PolicyError> {
        let build = |patterns: &[&str]| -> Result<Option<AhoCorasick>, PolicyError> {
            if patterns.is_empty() {
                return Ok(None);
            }
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(patterns)
                .map(Some)
                .map_err(|e| PolicyError::Automaton {
                    message: e.to_string(),
                })
        };
        let secret_meta: Vec<(SecretAnchor, &'static str)> = secret::ANCHORS
            .iter()
            .filter(|(_, anchor)| self.plans.iter().any(|p| p.wants_secret(*anchor)))
            .map(|&(literal, anchor)| (anchor, literal))
            .collect();
        let secret_literals: Vec<&str> = secret_meta.iter().map(|&(_, literal)| literal).collect();
        let secret_anchors = build(&secret_literals)?;
        let phrases = if self.plans.iter().any(|p| p.injection) {
            let anchors: Vec<&str> = injection::PHRASES.iter().map(|p| p.anchor).collect();
            build(&anchors)?
        } else {
            None
        };
        let keyword_literals: Vec<String> = self
            .keyword_anchors
            .iter()
            .map(|(l, _)| l.clone())
            .collect();
        let keyword_refs: Vec<&str> = keyword_literals.iter().map(String::as_str).collect();
        let keywords = build(&keyword_refs)?;
        let keyword_meta: Vec<KeywordMeta> = self
            .keyword_anchors
            .drain(..)
            .map(|(_, meta)| meta)
            .collect();
        let regex_set = if self.regex_sources.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&self.regex_sources)
                    .size_limit(options.regex_size_limit.saturating_mul(4))
                    .dfa_size_limit(options.regex_dfa_size_limit.saturating_mul(4))
                    .nest_limit(64)
                    .build()
                    .map_err(|e| PolicyError::Regex {
                        rule_id: "(regex set)".to_owned(),
                        message: e.to_string(),
                    })?,
            )
        };
        let holdback = self
            .holdback
            .max(BASE_STREAM_HOLDBACK)
            .max(injection::max_len() + 1)
            .min(MAX_STREAM_HOLDBACK);
        let screens = [Phase::Request, Phase::Response]
            .map(|phase| self.rules.iter().any(|rule| rule.phase.covers(phase)));
        Ok(Policy {
            program: Arc::new(Program {
                screens,
                rules: self.rules,
                detector_rules: self.detector_rules,
                meta_rules: self.meta_rules,
                plans: self.plans,
                secret_anchors,
                secret_meta,
                phrases,
                keywords,
                keyword_meta,
                regex_set,
                regexes: self.regexes,
                phone_regions,
                holdback,
            }),
        })
    }
}

fn enable(plan: &mut ScanPlan, selector: DetectorSelector) {
    match selector {
        DetectorSelector::AnySecret => {
            for kind in SecretKind::ALL {
                plan.secrets |= secret_bit(kind);
            }
            plan.structural.assignment = true;
        }
        DetectorSelector::One(id) => match id {
            DetectorId::CreditCard => plan.structural.card = true,
            DetectorId::Iban => plan.structural.iban = true,
            DetectorId::Email => plan.structural.email = true,
            DetectorId::Phone => plan.structural.phone = true,
            DetectorId::IpAddress => plan.structural.ip = true,
            DetectorId::UsSsn => plan.structural.ssn = true,
            DetectorId::Secret(kind) => {
                plan.secrets |= secret_bit(kind);
                if kind == SecretKind::Generic {
                    plan.structural.assignment = true;
                }
            }
            DetectorId::PromptInjection => plan.injection = true,
            DetectorId::InvisibleText => plan.invisible = true,
            DetectorId::Keyword
            | DetectorId::Regex
            | DetectorId::Model
            | DetectorId::MaxPromptBytes => {}
        },
    }
}
