package target

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// partSize is the size of the parts of a multipart upload, and the most a
// Put buffers: a stream that ends within one part goes as one PutObject.
const partSize = 8 << 20

// abortTimeout bounds the abort of a failed multipart upload, which runs
// even when the Put's own context has ended.
const abortTimeout = 30 * time.Second

// S3 is a Target in an S3 bucket under a key prefix. It works with AWS and
// with S3-compatible servers (path-style addressing and checksums only
// when required, when an endpoint is given).
type S3 struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
	url    string
}

var _ Target = (*S3)(nil)

func openS3(ctx context.Context, u *url.URL) (*S3, error) {
	bucket := u.Host
	if bucket == "" {
		return nil, fmt.Errorf("target %s: no bucket (want s3://bucket/prefix)", Redact(u.String()))
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("target %s: prefix: %v", Redact(u.String()), err)
		}
		prefix += "/"
	}
	q := u.Query()
	for k := range q {
		if k != "region" && k != "endpoint" {
			return nil, fmt.Errorf("target %s: unknown parameter %q (want region, endpoint)", Redact(u.String()), k)
		}
	}
	var opts []func(*config.LoadOptions) error
	if r := q.Get("region"); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("target %s: aws config: %w", Redact(u.String()), err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	endpoint := q.Get("endpoint")
	if endpoint != "" {
		if e, err := url.Parse(endpoint); err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return nil, fmt.Errorf("target %s: endpoint %q: want http(s)://host:port", Redact(u.String()), endpoint)
		}
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &S3{client: client, bucket: bucket, prefix: prefix, url: Redact(u.String())}, nil
}

// String returns the target's URL.
func (t *S3) String() string { return t.url }

func (t *S3) key(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return t.prefix + key, nil
}

// Put implements Target.
func (t *S3) Put(ctx context.Context, key string, r io.Reader) error {
	return t.put(ctx, key, r, false)
}

// PutIfAbsent implements Target with a conditional write (If-None-Match: *).
func (t *S3) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	return t.put(ctx, key, r, true)
}

func (t *S3) put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	k, err := t.key(key)
	if err != nil {
		return err
	}
	var ifNoneMatch *string
	if ifAbsent {
		ifNoneMatch = aws.String("*")
	}
	first, err := readPart(ctx, r)
	if err != nil {
		return fmt.Errorf("target: put %s: %w", key, err)
	}
	if len(first) < partSize {
		_, err := t.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &t.bucket, Key: &k, Body: bytes.NewReader(first),
			ContentLength: aws.Int64(int64(len(first))), IfNoneMatch: ifNoneMatch,
		})
		return t.putErr(key, err)
	}
	return t.multipart(ctx, key, k, first, r, ifNoneMatch)
}

// multipart uploads a stream of unknown size in parts, and aborts the
// upload when anything fails, so that no partial object or orphaned parts
// remain.
func (t *S3) multipart(ctx context.Context, key, k string, first []byte, r io.Reader, ifNoneMatch *string) (err error) {
	up, err := t.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &t.bucket, Key: &k})
	if err != nil {
		return t.putErr(key, err)
	}
	defer func() {
		if err != nil {
			// The abort must run even when ctx is what failed.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			t.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &t.bucket, Key: &k, UploadId: up.UploadId})
		}
	}()
	var parts []types.CompletedPart
	part := first
	for n := int32(1); len(part) > 0; n++ {
		out, err := t.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &t.bucket, Key: &k, UploadId: up.UploadId, PartNumber: aws.Int32(n),
			Body: bytes.NewReader(part), ContentLength: aws.Int64(int64(len(part))),
		})
		if err != nil {
			return t.putErr(key, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
		if len(part) < partSize {
			break
		}
		if part, err = readPart(ctx, r); err != nil {
			return fmt.Errorf("target: put %s: %w", key, err)
		}
	}
	_, err = t.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &t.bucket, Key: &k, UploadId: up.UploadId, IfNoneMatch: ifNoneMatch,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	return t.putErr(key, err)
}

// readPart reads up to partSize bytes; fewer means r reached EOF. The
// buffer grows with what r yields, so a small object (a manifest) does not
// cost a whole part.
func readPart(ctx context.Context, r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	_, err := io.CopyN(&buf, ctxReader{ctx, r}, partSize)
	if err == io.EOF {
		err = nil
	}
	return buf.Bytes(), err
}

func (t *S3) putErr(key string, err error) error {
	if err == nil {
		return nil
	}
	if code := apiCode(err); code == "PreconditionFailed" || code == "ConditionalRequestConflict" {
		return fmt.Errorf("%w: %s", ErrExists, key)
	}
	return fmt.Errorf("target: put %s: %w", key, err)
}

// apiCode returns the S3 error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func isNotFound(err error) bool {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	if errors.As(err, &nf) || errors.As(err, &nk) {
		return true
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// Get implements Target.
func (t *S3) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	k, err := t.key(key)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if _, err := t.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	in := &s3.GetObjectInput{Bucket: &t.bucket, Key: &k}
	switch {
	case n > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case off > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	out, err := t.client.GetObject(ctx, in)
	if isNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, key)
	}
	if apiCode(err) == "InvalidRange" {
		return io.NopCloser(bytes.NewReader(nil)), nil // past the end: nothing to read
	}
	if err != nil {
		return nil, fmt.Errorf("target: get %s: %w", key, err)
	}
	return out.Body, nil
}

// Stat implements Target.
func (t *S3) Stat(ctx context.Context, key string) (Info, error) {
	k, err := t.key(key)
	if err != nil {
		return Info{}, err
	}
	out, err := t.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &t.bucket, Key: &k})
	if isNotFound(err) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotExist, key)
	}
	if err != nil {
		return Info{}, fmt.Errorf("target: stat %s: %w", key, err)
	}
	return Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// List implements Target.
func (t *S3) List(ctx context.Context, prefix string, fn func(Info) error) error {
	p := s3.NewListObjectsV2Paginator(t.client, &s3.ListObjectsV2Input{Bucket: &t.bucket, Prefix: aws.String(t.prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("target: list %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), t.prefix)
			if err := fn(Info{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements Target.
func (t *S3) Delete(ctx context.Context, key string) error {
	k, err := t.key(key)
	if err != nil {
		return err
	}
	if _, err := t.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &t.bucket, Key: &k}); err != nil && !isNotFound(err) {
		return fmt.Errorf("target: delete %s: %w", key, err)
	}
	return nil
}

// CreateBucket creates the target's bucket if it does not exist (tests and
// first-time setup against S3-compatible servers).
func (t *S3) CreateBucket(ctx context.Context) error {
	_, err := t.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &t.bucket})
	if err != nil {
		if c := apiCode(err); c == "BucketAlreadyOwnedByYou" || c == "BucketAlreadyExists" {
			return nil
		}
		return fmt.Errorf("target: create bucket %s: %w", t.bucket, err)
	}
	return nil
}
