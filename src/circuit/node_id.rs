//! Canonical node ids: `<layer>.<site>[<index>]` (e.g. `2.attn.v[44]`) or `final_resid[<index>]`, built from the
//! reference's hook names so that they round-trip through strings and files.

use std::fmt;
use std::str::FromStr;

use crate::model::hook_name::HookNameError;
use crate::model::{HookName, HookSite};

/// The pruning-node sites of a block (spec B), plus `final_resid` after the last block: the subset of the model's
/// hook points ([`HookName`]) that carries circuit nodes, spelled by the model's one name table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Site {
    /// `attn.act_in`: the normalised input of attention (width `d_model_in`).
    AttnActIn,
    /// `attn.q`: query channels (width `n_head * d_head`).
    AttnQ,
    /// `attn.k`: key channels (width `n_head * d_head`).
    AttnK,
    /// `attn.v`: value channels (width `n_head * d_head`).
    AttnV,
    /// `attn.resid_delta`: what attention adds to the residual (width `d_model`).
    AttnResidDelta,
    /// `mlp.act_in`: the normalised input of the MLP (width `d_model_in`).
    MlpActIn,
    /// `mlp.post_act`: MLP neurons after the nonlinearity (width `d_mlp`).
    MlpPostAct,
    /// `mlp.resid_delta`: what the MLP adds to the residual (width `d_model`).
    MlpResidDelta,
    /// `final_resid`: the residual after the last block (width `d_model`); has no layer.
    FinalResid,
}

impl Site {
    /// Every site, in forward order within a block, `final_resid` last.
    pub const ALL: [Site; 9] = [
        Site::AttnActIn,
        Site::AttnQ,
        Site::AttnK,
        Site::AttnV,
        Site::AttnResidDelta,
        Site::MlpActIn,
        Site::MlpPostAct,
        Site::MlpResidDelta,
        Site::FinalResid,
    ];

    /// The block-relative hook name (`attn.q`), or `final_resid`.
    pub fn name(self) -> &'static str {
        match self.hook_site() {
            Some(site) => site.name(),
            None => crate::model::hook_name::FINAL_RESID,
        }
    }

    /// The model's hook site of a block site (None for `final_resid`, which lies after the blocks).
    pub const fn hook_site(self) -> Option<HookSite> {
        Some(match self {
            Site::AttnActIn => HookSite::AttnActIn,
            Site::AttnQ => HookSite::AttnQ,
            Site::AttnK => HookSite::AttnK,
            Site::AttnV => HookSite::AttnV,
            Site::AttnResidDelta => HookSite::AttnResidDelta,
            Site::MlpActIn => HookSite::MlpActIn,
            Site::MlpPostAct => HookSite::MlpPostAct,
            Site::MlpResidDelta => HookSite::MlpResidDelta,
            Site::FinalResid => return None,
        })
    }

    /// The node site at a model hook site (None for hooks without pruning nodes, e.g. `resid_in`).
    pub fn from_hook_site(site: HookSite) -> Option<Site> {
        Site::ALL.into_iter().find(|s| s.hook_site() == Some(site))
    }

    /// The hook this site lives at in block `layer` (`layer` is ignored for `final_resid`).
    pub fn hook(self, layer: usize) -> HookName {
        match self.hook_site() {
            Some(site) => HookName::block(layer, site),
            None => HookName::FinalResid,
        }
    }

    /// Whether the site is a query, key or value (whose channels belong to a head).
    pub fn is_qkv(self) -> bool {
        matches!(self, Site::AttnQ | Site::AttnK | Site::AttnV)
    }

    /// The number of channels at this site in a model of config `cfg` (spec B).
    pub fn width(self, cfg: &crate::model::Config) -> usize {
        match self {
            Site::AttnActIn | Site::MlpActIn => cfg.d_model_in(),
            Site::AttnQ | Site::AttnK | Site::AttnV => cfg.attn_width(),
            Site::AttnResidDelta | Site::MlpResidDelta | Site::FinalResid => cfg.d_model,
            Site::MlpPostAct => cfg.d_mlp,
        }
    }

    /// Whether the site belongs to the attention sublayer (false for MLP sites and `final_resid`).
    pub fn is_attn(self) -> bool {
        matches!(
            self,
            Site::AttnActIn | Site::AttnQ | Site::AttnK | Site::AttnV | Site::AttnResidDelta
        )
    }

    /// The site of a block-relative hook name such as `attn.q`.
    pub fn from_name(name: &str) -> Option<Site> {
        Site::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One channel at one site: a circuit node. Its canonical string (`2.attn.v[44]`) round-trips through
/// `Display`/`FromStr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// None only for `final_resid`.
    pub layer: Option<usize>,
    /// Where in the block the channel is.
    pub site: Site,
    /// The channel index within the site's width.
    pub index: usize,
}

/// Why a well-formed node id does not exist in a given model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeCheckError {
    /// The node's layer is beyond the model's last.
    #[error("node `{node}`: layer {layer} does not exist (the model has {n_layer} layers)")]
    NoSuchLayer {
        /// The node.
        node: NodeId,
        /// Its layer.
        layer: usize,
        /// The model's layer count.
        n_layer: usize,
    },
    /// The node's channel index is not below its site's width.
    #[error("node `{node}`: index {} is out of range (`{hook}` has {width} channels)", node.index)]
    IndexOutOfRange {
        /// The node.
        node: NodeId,
        /// The hook the node reads.
        hook: String,
        /// The channel count of that hook in the model.
        width: usize,
    },
}

/// A string that is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid node id `{input}`: {problem} (expected e.g. `2.attn.v[44]`, `0.mlp.post_act[985]` or `final_resid[7]`)"
)]
pub struct NodeIdError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    #[source]
    pub problem: NodeIdProblem,
}

/// What is wrong with a node id (the `problem` of [`NodeIdError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdProblem {
    /// No `[index]` after the hook.
    #[error("missing `[index]`")]
    MissingIndex,
    /// The `[index]` is not a number.
    #[error("the index is not a non-negative integer")]
    IndexNotInteger,
    /// No `L.` before the site.
    #[error("missing the layer number")]
    MissingLayer,
    /// The `L` of `L.site` is not a number.
    #[error("the layer is not a number")]
    LayerNotNumber,
    /// The site is none of the node sites.
    #[error("unknown site")]
    UnknownSite,
    /// A positioned node without `@position`.
    #[error("missing `@position`")]
    MissingPosition,
    /// The `@position` is not a number.
    #[error("the position is not a non-negative integer")]
    PositionNotInteger,
    /// A TransformerLens hook name that is no hook.
    #[error(transparent)]
    Hook(#[from] HookNameError),
    /// A part of a TransformerLens `[head:channel]` or `[index]` is not a number.
    #[error("the {what} `{text}` is not a non-negative integer")]
    NotInteger {
        /// `head`, `channel` or `index`.
        what: &'static str,
        /// The text given.
        text: String,
    },
    /// A `[head:channel]` channel at or past the head width.
    #[error("channel {channel} is beyond a head's {d_head} channels")]
    ChannelBeyondHead {
        /// The channel given.
        channel: usize,
        /// The model's head width.
        d_head: usize,
    },
    /// `[head:channel]` on a hook that has no heads.
    #[error("`[head:channel]` is only for q, k and v")]
    NotPerHead,
    /// A hook that holds no circuit nodes (`hook_resid_pre`, `hook_z`, ...).
    #[error(
        "`{hook}` (ours: `{ours}`) holds no circuit nodes; nodes live at attention inputs, q, k, v, attention \
         outputs, MLP inputs, neurons and outputs, and the final residual"
    )]
    NoNodes {
        /// The hook as given.
        hook: String,
        /// Its name in our spelling.
        ours: HookName,
    },
}

impl NodeId {
    /// A node of a block (`layer` 0-based); not for `final_resid`, which has no layer.
    pub fn new(layer: usize, site: Site, index: usize) -> Self {
        debug_assert!(site != Site::FinalResid);
        NodeId {
            layer: Some(layer),
            site,
            index,
        }
    }

    /// The `final_resid[index]` node.
    pub fn final_resid(index: usize) -> Self {
        NodeId {
            layer: None,
            site: Site::FinalResid,
            index,
        }
    }

    /// The hook this node lives at.
    pub fn hook(&self) -> HookName {
        match self.layer {
            Some(l) => self.site.hook(l),
            None => HookName::FinalResid,
        }
    }

    /// The reference's hook name this node lives at, e.g. `2.attn.v`.
    pub fn hook_name(&self) -> String {
        self.hook().to_string()
    }

    /// The node at channel `index` of a typed hook; None for a hook that holds no pruning nodes.
    pub fn at_hook(hook: HookName, index: usize) -> Option<Self> {
        match hook {
            HookName::FinalResid => Some(NodeId::final_resid(index)),
            HookName::Block { layer, site } => Some(NodeId::new(layer, Site::from_hook_site(site)?, index)),
        }
    }

    /// The node at channel `index` of hook `hook` (e.g. `2.attn.v`, `final_resid`); None for a hook that holds
    /// no pruning nodes.
    pub fn from_hook(hook: &str, index: usize) -> Option<Self> {
        if hook == Site::FinalResid.name() {
            return Some(NodeId::final_resid(index));
        }
        let (layer, site) = hook.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let site = Site::from_name(site).filter(|s| *s != Site::FinalResid)?;
        Some(NodeId::new(layer, site, index))
    }

    /// Reads a node id spelled ours (`2.attn.v[44]`) or TransformerLens's way (`blocks.2.attn.hook_v[44]`,
    /// `blocks.0.mlp.hook_post[7]`, `blocks.1.hook_resid_post[3]` after the last block for `final_resid[3]`), for
    /// a model of `n_layer` blocks with heads of `d_head` channels. At TransformerLens's q, k and v, `[h:c]` is
    /// head h's channel c (its `[head, d_head]` indexing), the node `[h·d_head + c]`; a plain `[i]` is the
    /// flattened index, as ours. Hooks that hold no nodes (`hook_resid_pre`, `hook_z`, ...) are refused by name.
    pub fn parse_for(s: &str, n_layer: usize, d_head: usize) -> Result<NodeId, NodeIdError> {
        let text = s.trim();
        if let Ok(id) = text.parse::<NodeId>() {
            return Ok(id);
        }
        let err = |problem: NodeIdProblem| NodeIdError {
            input: text.to_string(),
            problem,
        };
        let (hook, idx) = split_indexed(text).ok_or_else(|| err(NodeIdProblem::MissingIndex))?;
        if !hook.starts_with("blocks.") {
            // Not TransformerLens's spelling either: ours says best what is wrong.
            return text.parse::<NodeId>();
        }
        let name = HookName::parse_any(hook, n_layer).map_err(|e| err(e.into()))?;
        let number = |t: &str, what: &'static str| -> Result<usize, NodeIdError> {
            t.trim().parse().map_err(|_| {
                err(NodeIdProblem::NotInteger {
                    what,
                    text: t.to_string(),
                })
            })
        };
        let index = match idx.split_once(':') {
            Some((h, c)) if name.is_per_head() => {
                let (h, c) = (number(h, "head")?, number(c, "channel")?);
                if c >= d_head {
                    return Err(err(NodeIdProblem::ChannelBeyondHead { channel: c, d_head }));
                }
                h * d_head + c
            }
            Some(_) => return Err(err(NodeIdProblem::NotPerHead)),
            None => number(idx, "index")?,
        };
        NodeId::at_hook(name, index).ok_or_else(|| {
            err(NodeIdProblem::NoNodes {
                hook: hook.to_string(),
                ours: name,
            })
        })
    }

    /// The channel count of this node's site in `cfg`.
    pub fn width(&self, cfg: &crate::model::Config) -> usize {
        self.site.width(cfg)
    }

    /// Checks that this node exists in a model of config `cfg`; the error says why not.
    pub fn check(&self, cfg: &crate::model::Config) -> Result<(), NodeCheckError> {
        if let Some(layer) = self.layer {
            if layer >= cfg.n_layer {
                return Err(NodeCheckError::NoSuchLayer {
                    node: *self,
                    layer,
                    n_layer: cfg.n_layer,
                });
            }
        }
        let width = self.width(cfg);
        if self.index >= width {
            return Err(NodeCheckError::IndexOutOfRange {
                node: *self,
                hook: self.hook_name(),
                width,
            });
        }
        Ok(())
    }

    /// A sort key in forward (computation) order: layer, then the site's position in the block.
    pub fn forward_order(&self) -> (usize, usize, usize) {
        let site_pos = match self.site {
            Site::AttnActIn => 0,
            Site::AttnQ => 1,
            Site::AttnK => 2,
            Site::AttnV => 3,
            Site::AttnResidDelta => 4,
            Site::MlpActIn => 5,
            Site::MlpPostAct => 6,
            Site::MlpResidDelta => 7,
            Site::FinalResid => 8,
        };
        (self.layer.unwrap_or(usize::MAX), site_pos, self.index)
    }

    /// (head, channel within head) for q/k/v nodes.
    pub fn head_channel(&self, d_head: usize) -> Option<(usize, usize)> {
        (self.site.is_qkv() && d_head > 0).then(|| (self.index / d_head, self.index % d_head))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.hook_name(), self.index)
    }
}

/// Splits `hook[index]` into the hook name and the index text.
pub fn split_indexed(s: &str) -> Option<(&str, &str)> {
    let open = s.find('[')?;
    let inner = s[open + 1..].strip_suffix(']')?;
    Some((&s[..open], inner))
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |problem: NodeIdProblem| NodeIdError {
            input: s.to_string(),
            problem,
        };
        let (hook, idx) = split_indexed(s.trim()).ok_or_else(|| err(NodeIdProblem::MissingIndex))?;
        let index: usize = idx.parse().map_err(|_| err(NodeIdProblem::IndexNotInteger))?;
        if hook == Site::FinalResid.name() {
            return Ok(NodeId::final_resid(index));
        }
        let (layer, site) = hook.split_once('.').ok_or_else(|| err(NodeIdProblem::MissingLayer))?;
        let layer: usize = layer.parse().map_err(|_| err(NodeIdProblem::LayerNotNumber))?;
        let site = Site::ALL
            .into_iter()
            .find(|x| x.name() == site && *x != Site::FinalResid)
            .ok_or_else(|| err(NodeIdProblem::UnknownSite))?;
        Ok(NodeId::new(layer, site, index))
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A node at one token position: `1.mlp.post_act[98]@12`, the nodes of per-prompt attribution graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PositionedNode {
    /// The channel.
    pub node: NodeId,
    /// The token position (0-based).
    pub pos: usize,
}

impl fmt::Display for PositionedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.pos)
    }
}

impl FromStr for PositionedNode {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (node, pos) = s.rsplit_once('@').ok_or_else(|| NodeIdError {
            input: s.to_string(),
            problem: NodeIdProblem::MissingPosition,
        })?;
        let pos = pos.parse().map_err(|_| NodeIdError {
            input: s.to_string(),
            problem: NodeIdProblem::PositionNotInteger,
        })?;
        Ok(PositionedNode {
            node: node.parse()?,
            pos,
        })
    }
}

impl serde::Serialize for PositionedNode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PositionedNode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positioned_round_trips() {
        for s in ["1.mlp.post_act[98]@12", "final_resid[3]@0", "0.attn.v[44]@7"] {
            let n: PositionedNode = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
        }
        assert_eq!("1.mlp.post_act[98]@12".parse::<PositionedNode>().unwrap().pos, 12);
        for bad in ["1.mlp.post_act[98]", "1.mlp.post_act[98]@x", "1.mlp.nope[98]@1", "@3"] {
            assert!(bad.parse::<PositionedNode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips() {
        for s in [
            "2.attn.v[44]",
            "0.mlp.post_act[985]",
            "final_resid[1249]",
            "11.attn.act_in[0]",
        ] {
            let id: NodeId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
        let id: NodeId = "3.attn.q[37]".parse().unwrap();
        assert_eq!(id.head_channel(16), Some((2, 5)));
        assert_eq!(id.hook_name(), "3.attn.q");
        assert_eq!(id.hook(), HookName::block(3, HookSite::AttnQ));
    }

    /// Every node site is a model hook site, and back; `final_resid` is the model's final hook.
    #[test]
    fn sites_are_model_hooks() {
        for site in Site::ALL {
            let id = if site == Site::FinalResid {
                NodeId::final_resid(5)
            } else {
                NodeId::new(2, site, 5)
            };
            assert_eq!(id.hook().to_string(), id.hook_name());
            assert_eq!(NodeId::at_hook(id.hook(), 5), Some(id));
            assert_eq!(NodeId::from_hook(&id.hook_name(), 5), Some(id));
        }
        assert_eq!(NodeId::at_hook(HookName::block(0, HookSite::ResidMid), 1), None);
    }

    #[test]
    fn transformer_lens_spellings_resolve() {
        let p = |s: &str| NodeId::parse_for(s, 4, 16);
        assert_eq!(p("blocks.2.attn.hook_v[44]"), Ok(NodeId::new(2, Site::AttnV, 44)));
        assert_eq!(p("blocks.3.attn.hook_q[2:5]"), Ok(NodeId::new(3, Site::AttnQ, 37)));
        assert_eq!(
            p(" blocks.0.mlp.hook_post[7] "),
            Ok(NodeId::new(0, Site::MlpPostAct, 7))
        );
        assert_eq!(
            p("blocks.1.hook_mlp_out[3]"),
            Ok(NodeId::new(1, Site::MlpResidDelta, 3))
        );
        assert_eq!(p("blocks.3.hook_resid_post[9]"), Ok(NodeId::final_resid(9)));
        assert_eq!(p("1.attn.k[3]"), Ok(NodeId::new(1, Site::AttnK, 3)));
        for bad in [
            "blocks.1.hook_resid_pre[3]",
            "blocks.1.attn.hook_z[3]",
            "blocks.1.attn.hook_q[1:16]",
            "blocks.1.mlp.hook_post[1:2]",
            "blocks.4.hook_resid_post[0]",
            "blocks.1.attn.hook_q[x]",
            "blocks.1.attn.hook_q",
            "2.attn.y[1]",
        ] {
            let e = p(bad).expect_err(bad);
            assert!(e.to_string().contains(bad.trim()), "{e}");
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for s in [
            "2.attn.v",
            "x.attn.v[1]",
            "2.attn.y[1]",
            "2.attn.v[-1]",
            "final_resid[a]",
            "2.final_resid[1]",
        ] {
            assert!(s.parse::<NodeId>().is_err(), "{s}");
        }
        let problem = |s: &str| s.parse::<NodeId>().unwrap_err().problem;
        assert_eq!(problem("2.attn.v"), NodeIdProblem::MissingIndex);
        assert_eq!(problem("x.attn.v[1]"), NodeIdProblem::LayerNotNumber);
        assert_eq!(problem("2.attn.y[1]"), NodeIdProblem::UnknownSite);
        assert_eq!(problem("2.attn.v[-1]"), NodeIdProblem::IndexNotInteger);
        assert_eq!(
            "1.mlp.post_act[2]".parse::<PositionedNode>().unwrap_err().problem,
            NodeIdProblem::MissingPosition
        );
        let tl = |s: &str| NodeId::parse_for(s, 4, 16).unwrap_err().problem;
        assert_eq!(
            tl("blocks.1.attn.hook_q[1:16]"),
            NodeIdProblem::ChannelBeyondHead {
                channel: 16,
                d_head: 16
            }
        );
        assert_eq!(tl("blocks.1.mlp.hook_post[1:2]"), NodeIdProblem::NotPerHead);
        assert!(matches!(tl("blocks.1.attn.hook_z[3]"), NodeIdProblem::NoNodes { .. }));
        assert_eq!(
            tl("blocks.1.attn.hook_q[x]"),
            NodeIdProblem::NotInteger {
                what: "index",
                text: "x".into()
            }
        );
    }
}
