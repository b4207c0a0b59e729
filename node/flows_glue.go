package node

import "github.com/segmesh/segmesh/api"

// subscribeFlows returns live flow updates for the stream; none yet.
func (n *Node) subscribeFlows() (<-chan api.Flow, func()) { return nil, func() {} }
